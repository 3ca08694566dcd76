// Verifies an Airlock audit checkpoint with Go's golang.org/x/mod/sumdb/note, an implementation
// of C2SP signed notes that knows nothing about Airlock. Usage: note-check VERIFIER_KEY NOTE_FILE.
// Prints the verified note body and the signer's name; exits 1 when the note does not verify.
package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: note-check VERIFIER_KEY NOTE_FILE")
		os.Exit(2)
	}
	verifier, err := note.NewVerifier(strings.TrimSpace(os.Args[1]))
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad verifier key:", err)
		os.Exit(2)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fmt.Fprintln(os.Stderr, "does not verify:", err)
		os.Exit(1)
	}
	// A tlog-checkpoint body: origin, decimal size, base64 root hash.
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		fmt.Fprintln(os.Stderr, "not a checkpoint")
		os.Exit(1)
	}
	if _, err := strconv.ParseUint(lines[1], 10, 64); err != nil {
		fmt.Fprintln(os.Stderr, "bad tree size:", err)
		os.Exit(1)
	}
	fmt.Printf("verified by %s: origin=%s size=%s root=%s\n", n.Sigs[0].Name, lines[0], lines[1], lines[2])
}
