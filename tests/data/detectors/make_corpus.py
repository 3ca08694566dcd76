#!/usr/bin/env python3
"""Generates corpus.jsonl, the labelled detector corpus (synthetic, deterministic: seed 20261129).

Each line: {"text": ..., "labels": [{"class": ..., "value": ...}, ...]}. Positives are synthetic
but valid (check digits computed), embedded in English and Chinese sentences; negatives are
look-alikes that must not be reported (bad check digits, version numbers, hashes, UUIDs, order
numbers, placeholders, low-entropy passwords). Run: python3 make_corpus.py > corpus.jsonl
"""
import json, random, string

rng = random.Random(20261129)
lines = []

def add(text, *labels):
    lines.append({"text": text, "labels": [{"class": c, "value": v} for c, v in labels]})

def rand(chars, n):
    return "".join(rng.choice(chars) for _ in range(n))

AN = string.ascii_letters + string.digits
HEX = "0123456789abcdef"

def luhn_complete(prefix, length):
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for d in "0123456789":
        s = body + d
        total = 0
        for i, ch in enumerate(reversed(s)):
            v = int(ch)
            if i % 2 == 1:
                v *= 2
                if v > 9: v -= 9
            total += v
        if total % 10 == 0:
            return s
def luhn_break(s):
    last = (int(s[-1]) + 1) % 10
    return s[:-1] + str(last)

def iban(cc, length):
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    num = "".join(str(int(c, 36)) for c in bban + cc + "00")
    check = 98 - int(num) % 97
    return cc + "%02d" % check + bban
def spaced(s):
    return " ".join(s[i:i+4] for i in range(0, len(s), 4))

def cn_id():
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    area = rng.choice(["110105", "310104", "440305", "510107", "330106"])
    birth = "%04d%02d%02d" % (rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28))
    seq = "%03d" % rng.randint(0, 999)
    body = area + birth + seq
    return body + "10X98765432"[sum(int(a) * b for a, b in zip(body, w)) % 11]

def ssn():
    while True:
        a = rng.randint(1, 899)
        if a != 666: break
    return "%03d-%02d-%04d" % (a, rng.randint(1, 99), rng.randint(1, 9999))

names = ["alice", "bob.smith", "li.wei", "zhang_san", "m.mueller", "ops+alerts", "j.doe"]
domains = ["example.com", "corp.example.org", "mail.example.cn", "uni-example.de", "example.co.uk"]
en = ["Please contact {} about the invoice.", "Forward this to {} today.", "My details: {}.",
      "The customer wrote from {} yesterday.", "Send the report to {} and cc me."]
zh = ["请联系 {} 处理发票。", "客户的信息是 {}，请核实。", "把报告发给 {} 吧。"]

def sentence(v):
    return rng.choice(en + zh).format(v)

# ---- positives ----
for _ in range(30):
    v = rng.choice(names) + "@" + rng.choice(domains)
    add(sentence(v), ("email", v))
for _ in range(15):
    v = "+%d %d %s %s" % (rng.choice([44, 49, 33, 1, 61, 81]), rng.randint(20, 99),
                          rand(string.digits, 4), rand(string.digits, 4))
    add(sentence(v), ("phone", v))
for _ in range(15):
    v = "1" + rng.choice("3456789") + rand(string.digits, 9)
    fmt = rng.choice([v, v[:3] + " " + v[3:7] + " " + v[7:], "+86 " + v])
    add(sentence(fmt), ("phone", fmt))
for _ in range(25):
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16),
                                 ("62", 16), ("35", 16)])
    c = luhn_complete(prefix, length)
    fmt = rng.choice([c, " ".join(c[i:i+4] for i in range(0, len(c), 4)),
                      "-".join(c[i:i+4] for i in range(0, len(c), 4))])
    add(sentence(fmt), ("payment_card", fmt))
for _ in range(20):
    cc, n = rng.choice([("DE", 22), ("GB", 22), ("FR", 27), ("NL", 18), ("ES", 24), ("CH", 21)])
    if cc == "GB" or cc == "NL":
        bank = rand(string.ascii_uppercase, 4)
        digits = "".join(rng.choice(string.digits) for _ in range(n - 8))
        bban = bank + digits
        num = "".join(str(int(c, 36)) for c in bban + cc + "00")
        v = cc + "%02d" % (98 - int(num) % 97) + bban
    else:
        v = iban(cc, n)
    fmt = rng.choice([v, spaced(v)])
    add(sentence(fmt), ("iban", fmt))
for _ in range(20):
    v = ssn()
    add(sentence(v), ("us_ssn", v))
for _ in range(20):
    v = cn_id()
    add(sentence(v), ("cn_resident_id", v))
for _ in range(15):
    v = "%d.%d.%d.%d" % (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255),
                         rng.randint(1, 254))
    add("Server at " + v + " refused the connection.", ("ip_address", v))
for v in ["2001:db8::1", "fe80::1ff:fe23:4567:890a", "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
          "::1", "2400:cb00:2048:1::c629:d7a2"]:
    add("The host resolved to " + v + " in the logs.", ("ip_address", v))

secrets = [
    "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
    "AIza" + rand(AN + "-_", 35),
    "ghp_" + rand(AN, 36),
    "gho_" + rand(AN, 36),
    "github_pat_" + rand(AN + "_", 82),
    "glpat-" + rand(AN + "-_", 20),
    "xoxb-" + rand(string.digits, 11) + "-" + rand(string.digits, 12) + "-" + rand(AN, 24),
    "sk_live_" + rand(AN, 24),
    "rk_test_" + rand(AN, 24),
    "sk-proj-" + rand(AN, 40) + "T3BlbkFJ" + rand(AN, 40),
    "sk-ant-api03-" + rand(AN + "-_", 93) + "AA",
    "hf_" + rand(string.ascii_letters, 34),
    "npm_" + rand(AN, 36),
    "SG." + rand(AN, 22) + "." + rand(AN, 43),
    "sk-" + rand(HEX, 32),   # DeepSeek
    "sk-" + rand(HEX, 32),   # DashScope / Qwen
    "sk-" + rand(AN, 48),    # Moonshot
    rand(HEX, 32) + "." + rand(AN, 16),  # Zhipu
    "LTAI" + rand(AN, 20),
    "gsk_" + rand(AN, 52),
    "pplx-" + rand(AN, 48),
    "dop_v1_" + rand(HEX, 64),
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIx" + rand(AN, 20) + "." + rand(AN + "-_", 43),
    "shpat_" + rand(HEX, 32),
    "AGE-SECRET-KEY-1" + rand("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58),
]
for s in secrets:
    add(rng.choice(["Use this key: {}", "export TOKEN={}", "config: key = \"{}\"", "密钥是 {}"]).format(s),
        ("secret", s))
for _ in range(8):
    v = rand(AN, 24) + rand(string.digits, 4)
    add(rng.choice(["api_key = \"{}\"", "password: {}", "client_secret={}", "\"apiKey\": \"{}\""]).format(v),
        ("secret", v))
pem = "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(rand(AN + "+/", 64) for _ in range(4)) + "\n-----END RSA PRIVATE KEY-----"
add("here is the key\n" + pem + "\nthanks", ("secret", pem))
v = "postgres://admin:" + rand(AN, 16) + "@db.internal:5432/app"
add("DATABASE_URL=" + v, ("secret", v.split(":")[2].split("@")[0]))
# mixed
e = "li.wei@" + rng.choice(domains); c = luhn_complete("4", 16)
add("Customer " + e + " paid with " + c + " from 10.1.2.3.", ("email", e), ("payment_card", c),
    ("ip_address", "10.1.2.3"))

# ---- negatives (look-alikes) ----
for _ in range(20):
    c = luhn_break(luhn_complete("4", 16))
    add("Order number " + c + " has shipped.")
for _ in range(10):
    add("Tracking id " + rand(string.digits, 16) + "0 was created.")
for _ in range(10):
    add("Upgrade to version %d.%d.%d.%d.%d of the package." % tuple(rng.randint(0, 20) for _ in range(5)))
for _ in range(10):
    add("Commit " + rand(HEX, 40) + " fixed it; digest sha256:" + rand(HEX, 64))
for _ in range(10):
    add("Request id %s-%s-%s-%s-%s failed." % (rand(HEX, 8), rand(HEX, 4), rand(HEX, 4), rand(HEX, 4), rand(HEX, 12)))
for _ in range(10):
    v = cn_id(); bad = v[:-1] + ("0" if v[-1] != "0" else "1")
    add("编号 " + bad + " 已作废。")
for _ in range(10):
    add("Meeting at %02d:%02d:%02d on 2024-%02d-%02d." % (rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59), rng.randint(1, 12), rng.randint(1, 28)))
for v in ["000-12-3456", "666-12-3456", "123-45-6789", "078-05-1120", "912-34-5678"]:
    add("Test SSN " + v + " is not real.")
for v in ["DE89 3704 0044 0532 0130 01", "GB00 WEST 1234 5698 7654 32", "FR76 3000 6000 0112 3456 7890 188"]:
    add("Wrong account " + v + " bounced.")
for v in ["sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "password=changeme", "api_key = \"YOUR_API_KEY_HERE\"",
          "token: <redacted>", "secret = ${SECRET}", "ghp_xxx", "AKIAEXAMPLE"]:
    add("Docs placeholder: " + v)
for _ in range(10):
    add("Call extension " + rand(string.digits, 4) + " or room " + rand(string.digits, 3) + ".")
for _ in range(10):
    add("The total was " + rand(string.digits, 3) + "," + rand(string.digits, 3) + "," + rand(string.digits, 3) + " yuan.")
for _ in range(5):
    add("MAC %s:%s:%s:%s:%s:%s on port 8080." % tuple(rand(HEX, 2) for _ in range(6)))
add("Email me at support [at] example [dot] com.")
add("See section 10.2.3 and RFC 6962.")
add("The image is base64: " + rand(AN + "+/", 200))

# ---- hard cases, labelled truthfully whether or not the detectors get them ----
# Formats the detectors do not cover (expected misses) and look-alikes they may flag.
add("Call me at (415) 555-0132 after lunch.", ("phone", "(415) 555-0132"))
add("Office: 020 7946 0958 (London).", ("phone", "020 7946 0958"))
add("座机 010-6552 9988 转 8001。", ("phone", "010-6552 9988"))
add("WhatsApp +49-151-2345-6789 any time.", ("phone", "+49-151-2345-6789"))
add("Card: 4111.1111.1111.1111 (dots).", ("payment_card", "4111.1111.1111.1111"))
add("Card no. 5500 0000 0000 0004 on file.", ("payment_card", "5500 0000 0000 0004"))
add("IBAN: de89 3704 0044 0532 0130 00 (lower case).", ("iban", "de89 3704 0044 0532 0130 00"))
add("Mail: müller@bücher.example (IDN).", ("email", "müller@bücher.example"))
add("Reach me: JOHN.DOE@EXAMPLE.COM", ("email", "JOHN.DOE@EXAMPLE.COM"))
add("my password is hunter2, don't tell", ("secret", "hunter2"))
add("the admin pass: Tr0ub4dor&3", ("secret", "Tr0ub4dor&3"))
add("Token for the internal API: 7f3c9a1e5b2d8f4a6c0e9b1d3f5a7c9e", ("secret", "7f3c9a1e5b2d8f4a6c0e9b1d3f5a7c9e"))
add("SSN without dashes: 536221234", ("us_ssn", "536221234"))
add("用户身份证：440305199001011234", )  # wrong check digit: not an ID
add("IPv4-mapped ::ffff:192.0.2.128 seen.", ("ip_address", "::ffff:192.0.2.128"))
add("Semantic version 10.4.22.1 released.")  # four-part version: looks like an IP
add("Coordinates 51.5074, -0.1278 and build 2.0.0.1")
add("Invoice 2024-0001-5555-4444 paid.")
add("Use ISBN 978-3-16-148410-0 for the citation.")
add("The hash is AKIAIOSFODNN7EXAMPLE in the AWS docs.", ("secret", "AKIAIOSFODNN7EXAMPLE"))
add("Example JWT header eyJhbGciOiJIUzI1NiJ9 alone is fine.")
add("Call +1 800 FLOWERS now.")
add("Session: sk-" + "0" * 32 + " (all zeros)")
add("Meeting id 845 2231 9087 4432 for the call.")

# ---- evasions (issue #13): look-alike letters, separators, control characters ----
# Appended after everything else so that the lines above keep their text and order.
add("Mail: \u0430lice@ex\u0430mple.com (Cyrillic a).", ("email", "\u0430lice@ex\u0430mple.com"))
add("Reply to j\u03bfhn@\u0435xample.org please.", ("email", "j\u03bfhn@\u0435xample.org"))
add("Key: \u0455k-3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c (Cyrillic dze).",
    ("secret", "\u0455k-3f9a0c1b7d2e4f6a8b0c1d2e3f4a5b6c"))
add("export AWS_ID=\u0410KIAQ3EGRLVZ2XKJ7N4M", ("secret", "\u0410KIAQ3EGRLVZ2XKJ7N4M"))
add("Phone 138.1234.5678 (dots).", ("phone", "138.1234.5678"))
add("电话 (138)1234-5678 找我。", ("phone", "(138)1234-5678"))
add("Office +44.20.7946.0958 or +1 (415) 555-0132.", ("phone", "+44.20.7946.0958"),
    ("phone", "+1 (415) 555-0132"))
add("Write to ali\u0000ce@example.org today.", ("email", "ali\u0000ce@example.org"))
add("Card 4111\u00001111\u00001111\u00001111 on file.", ("payment_card", "4111\u00001111\u00001111\u00001111"))
add("Mobile 139\u001b2345\u001b6789 now.", ("phone", "139\u001b2345\u001b6789"))
add("Привет! Отчёт за квартал: выручка выросла, расходы сократились. Секрет успеха — команда.")
add("Καλημέρα! Η ΑΚΡΟΠΟΛΗ είναι ανοιχτή από τις 8 έως τις 20. ΕΠΙΚΟΙΝΩΝΙΑ ΚΑΙ ΤΑΧΥΔΡΟΜΕΙΟ.")
add("会议定于下午三点，地点在三楼会议室，二〇二四年十二月。")

# ---- evasions found after the merge (issue #13, second round) ----
# Country codes without "+", card separators other than blank and dash; and hard negatives for
# them (a "00" group inside an IBAN, comma lists, numbers on separate lines).
add("WeChat/phone 8613812345678 (country code, no plus).", ("phone", "8613812345678"))
add("手机：0086 139 2345 6789，请回电。", ("phone", "0086 139 2345 6789"))
add("London office 0044 20 7946 0958 (dialled 00).", ("phone", "0044 20 7946 0958"))
add("Card 4111/1111/1111/1111 (slashes).", ("payment_card", "4111/1111/1111/1111"))
add("Card 5500_0000_0000_0004 (underscores).", ("payment_card", "5500_0000_0000_0004"))
add("Card 4111\t1111\t1111\t1111 (tabs).", ("payment_card", "4111\t1111\t1111\t1111"))
add("Card 4111  1111  1111  1111 (double blanks).", ("payment_card", "4111  1111  1111  1111"))
add("Amex 3782 - 822463 - 10005 (spaced dashes).", ("payment_card", "3782 - 822463 - 10005"))
add("Transfer to DE89 3704 0044 0532 0130 00 done.", ("iban", "DE89 3704 0044 0532 0130 00"))
add("Account 0012345678 and reference 004420794609581.")
add("Sizes: 4111,1111,1111,1111 and 4000;5000;6000;7000.")
# Relabelled in the third round: a card written one group per line is a card (issue #13 F6).
add("Rows:\n4111\n1111\n1111\n1111\nend", ("payment_card", "4111\n1111\n1111\n1111"))
add("Ticket 4111/1111/1111/1112 (Luhn fails).")

# ---- third round of #13 evasions (F6, F8) ----
# Encoded data (percent, HTML references, backslash escapes, quoted-printable, base64 text data:
# URLs) and card groups on CRLF lines; hard negatives with the same encodings and no data.
add("Mail alice%40example.com (percent-encoded).", ("email", "alice%40example.com"))
add("Link https://shop.example/pay?card=4111%201111%201111%201111&x=1",
    ("payment_card", "4111%201111%201111%201111"))
add("<p>Contact: bob&#64;example.org</p>", ("email", "bob&#64;example.org"))
add("Contact carol&commat;example&period;net please.", ("email", "carol&commat;example&period;net"))
add("Hex reference dave&#x40;example.com here.", ("email", "dave&#x40;example.com"))
add('{"to":"erin\\u0040example.com","n":1}', ("email", "erin\\u0040example.com"))
add("To: frank=40example.com (quoted-printable).", ("email", "frank=40example.com"))
add("SSN 536&#45;22&#45;4581 in HTML.", ("us_ssn", "536&#45;22&#45;4581"))
add("Phone 138%201234%205678 in a URL.", ("phone", "138%201234%205678"))
add("Card 5500\r\n0000\r\n0000\r\n0004 (CRLF).", ("payment_card", "5500\r\n0000\r\n0000\r\n0004"))
add("see data:text/plain;base64,bWFpbCBhbGljZUBleGFtcGxlLmNvbQ== here",
    ("email", "bWFpbCBhbGljZUBleGFtcGxlLmNvbQ=="))
add("Use %20 for a space and %40 for an at sign in URLs.")
add("Tom &amp; Jerry &copy; 1940 &mdash; all rights reserved.")
add("Path C:\\new\\x41\\u0040\\test and \\n escapes.")
add("width=40 height=20 margin=3D spacing=0A")
add("Progress 50%+ and 1+1=2, x=41+42.")
add("data:text/plain;base64,SGVsbG8sIHdvcmxkIQ== says hello")
add("Order 2024%2D0001%2D5555 shipped.")
add("Rows:\n2021\n2022\n2023\n2024\nend")
add("Totals:\r\n1234\r\n5678\r\n9012\r\n3456")

for l in lines:
    print(json.dumps(l, ensure_ascii=False))
