package main

import (
	"encoding/json"
	"fmt"
	netmail "net/mail"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/impact-health/impact/internal/mail"
)

// renderFlags are the flags of notice render.
type renderFlags struct {
	wave, out, from, replyTo, recipients string
}

func (a *app) mailRenderCommand() *cobra.Command {
	var f renderFlags
	cmd := &cobra.Command{
		Use:   "render --wave FILE --out DIR --from ADDR [--reply-to ADDR] [--recipients FILE]",
		Short: "Write each notice of a wave as an .eml message, for review",
		Long: `Render turns every notice of a wave file (notice claim --out) into the email
that notice send delivers, and writes it to DIR/<notice id>.eml (mode 0600):
multipart/alternative with a text and an HTML part from the same notice text,
a footer with the notice id and snapshot version, no links or images.

The messages have no To: header unless --recipients (the subject_id,email CSV)
is given. A malformed wave line refuses the whole wave, naming the line,
before anything is written. Nothing here talks to impactd.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.renderWave(f)
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.wave, "wave", "", "wave file written by notice claim --out (required)")
	fl.StringVar(&f.out, "out", "", "directory for the .eml files (created if missing) (required)")
	fl.StringVar(&f.from, "from", "", `From address, "Name <addr>" or addr (required)`)
	fl.StringVar(&f.replyTo, "reply-to", "", "Reply-To address")
	fl.StringVar(&f.recipients, "recipients", "", "subject_id,email CSV: write To: headers")
	markRequired(cmd, "wave", "out", "from")
	cmd.MarkFlagFilename("wave", "jsonl")
	cmd.MarkFlagFilename("recipients", "csv")
	cmd.MarkFlagDirname("out")
	return cmd
}

// renderSummary is what render prints (as JSON with --json).
type renderSummary struct {
	Wave          string `json:"wave"`
	Out           string `json:"out"`
	Messages      int    `json:"messages"`
	WithRecipient int    `json:"with_recipient"`
}

func (a *app) renderWave(f renderFlags) error {
	h, err := parseFromFlags(f.from, f.replyTo)
	if err != nil {
		return err
	}
	var to map[string]*netmail.Address
	if f.recipients != "" {
		if to, err = readRecipients(f.recipients); err != nil {
			return err
		}
	}
	wave, count, err := openWave(f.wave, h)
	if err != nil {
		return err
	}
	defer wave.Close()
	if err := os.MkdirAll(f.out, 0o700); err != nil {
		return err
	}
	sum := renderSummary{Wave: f.wave, Out: f.out}
	p := a.newProgress(int64(count), "rendering", false)
	err = walkWave(wave, f.wave, func(w waveNotice) error {
		mh := h
		mh.To = to[w.subject]
		if mh.To != nil {
			sum.WithRecipient++
		}
		raw, err := mail.Build(w.notice, mh)
		if err != nil {
			return fmt.Errorf("%s line %d: %v", f.wave, w.line, err)
		}
		// The notice id is letters, digits and dashes (checked): a file
		// name inside DIR, never a path.
		if err := writeFileAtomic(filepath.Join(f.out, w.notice.ID+".eml"), raw); err != nil {
			return err
		}
		sum.Messages++
		p.add(1)
		return nil
	})
	p.done()
	if err != nil {
		return err
	}
	if a.jsonOut {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	fmt.Fprintf(a.stdout, "rendered %s messages to %s\n", num(sum.Messages), sum.Out)
	if f.recipients != "" {
		fmt.Fprintf(a.stdout, "  %s with a To: address, %s whose subject has none in %s\n",
			num(sum.WithRecipient), num(sum.Messages-sum.WithRecipient), f.recipients)
	}
	return nil
}

// writeFileAtomic writes data to name through a temporary file and a
// rename, mode 0600: a reader never sees half a message.
func writeFileAtomic(name string, data []byte) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, name)
}
