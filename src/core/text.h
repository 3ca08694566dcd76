// Small text helpers shared by modules that produce markup (the template interpreter's `escape`
// filter, the assessment's HTML report).
#pragma once

#include <string>
#include <string_view>

namespace airlock::core {

// `s` with & < > " ' replaced by &amp; &lt; &gt; &#34; &#39; (the set and entities of Jinja's
// escape filter), safe inside HTML text and quoted attribute values.
std::string HtmlEscape(std::string_view s);

}  // namespace airlock::core
