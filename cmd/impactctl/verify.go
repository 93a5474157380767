package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func (a *app) verifyCommand() *cobra.Command {
	var (
		incident string
		files    []string
	)
	cmd := &cobra.Command{
		Use:   "verify --incident ID --file WAVE.jsonl [--file ...]",
		Short: "Check that the notice ledger holds every notice of wave outbox files, changing nothing",
		Long: `Verify reads the outbox files that 'notice claim --out' wrote and asks Impact,
for every line, whether the ledger still pins that notice (a Redis failover
can lose pins that were acknowledged). It changes nothing.

It counts the lines whose notice is pinned, superseded by a newer notice, or
whose account was closed since, and lists each line whose pin is missing or
older than the line's version, by file, line and notice id (never by subject
id). The exit status is non-zero when any is listed: run 'impactctl notice
restore' with the same files to put them back, then verify again.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.verify(cmd.Context(), incident, files)
		}),
	}
	cmd.Flags().StringVar(&incident, "incident", "", "incident id (required); every line must be of this incident")
	cmd.Flags().StringArrayVar(&files, "file", nil, "wave outbox file (JSON lines); repeatable")
	markRequired(cmd, "incident")
	markRequired(cmd, "file")
	cmd.MarkFlagFilename("file", "jsonl")
	return cmd
}

// waveLine locates one streamed line in the files.
type waveLine struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

// verifyProblem is one listed line of the report.
type verifyProblem struct {
	waveLine
	NoticeID      string `json:"notice_id"`
	Problem       string `json:"problem"`
	PinnedVersion uint32 `json:"pinned_version,omitempty"`
}

func (a *app) verify(ctx context.Context, incident string, files []string) error {
	c, err := a.notices()
	if err != nil {
		return err
	}
	ctx, cancel := a.streamCtx(ctx)
	defer cancel()
	stream, err := c.VerifyNotices(ctx)
	if err != nil {
		return err
	}
	var sent []waveLine // index i-1 of the stream is sent[i-1]
	for _, name := range files {
		if err := sendVerify(stream, incident, name, &sent); errors.Is(err, io.EOF) {
			break // impactd ended the stream: CloseAndRecv says why
		} else if err != nil {
			_ = stream.CloseSend()
			return err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	problems := make([]verifyProblem, 0, len(resp.GetProblems()))
	for _, p := range resp.GetProblems() {
		i := int(p.GetIndex()) - 1
		if i < 0 || i >= len(sent) {
			return errors.New("verify: impactd named a line that was not sent")
		}
		what := "missing"
		if p.GetOutcome() == impactv1.VerifyOutcome_VERIFY_OUTCOME_OLDER {
			what = "older"
		}
		problems = append(problems, verifyProblem{waveLine: sent[i], NoticeID: p.GetNoticeId(), Problem: what, PinnedVersion: p.GetPinnedVersion()})
	}
	if a.jsonOut {
		out := struct {
			Incident  string          `json:"incident_id"`
			Lines     int             `json:"lines"`
			OK        uint32          `json:"ok"`
			Newer     uint32          `json:"newer"`
			Erased    uint32          `json:"erased"`
			Missing   uint32          `json:"missing"`
			Older     uint32          `json:"older"`
			Problems  []verifyProblem `json:"problems"`
			Truncated bool            `json:"truncated"`
		}{incident, len(sent), resp.GetOk(), resp.GetNewer(), resp.GetErased(), resp.GetMissing(), resp.GetOlder(), problems, resp.GetTruncated()}
		b, err := json.MarshalIndent(out, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "%s\n", b)
	} else {
		fmt.Fprintf(a.stdout, "verified %s notices from %d file(s) against the ledger of %s\n", num(int64(len(sent))), len(files), incident)
		fmt.Fprintf(a.stdout, "  ok        %s  pinned\n", num(int64(resp.GetOk())))
		fmt.Fprintf(a.stdout, "  newer     %s  a newer notice is pinned\n", num(int64(resp.GetNewer())))
		fmt.Fprintf(a.stdout, "  erased    %s  account closed since\n", num(int64(resp.GetErased())))
		fmt.Fprintf(a.stdout, "  missing   %s  no pin in the ledger\n", num(int64(resp.GetMissing())))
		fmt.Fprintf(a.stdout, "  older     %s  the pin is older than the wave's version\n", num(int64(resp.GetOlder())))
		if len(problems) > 0 {
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "FILE\tLINE\tNOTICE\tPROBLEM\tPINNED")
			for _, p := range problems {
				pinned := "-"
				if p.PinnedVersion > 0 {
					pinned = fmt.Sprintf("v%d", p.PinnedVersion)
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", p.File, p.Line, p.NoticeID, p.Problem, pinned)
			}
			_ = tw.Flush()
			if resp.GetTruncated() {
				fmt.Fprintf(a.stdout, "(only the first %d lines are listed)\n", len(problems))
			}
		}
	}
	if bad := resp.GetMissing() + resp.GetOlder(); bad > 0 {
		args := make([]string, len(files))
		for i, f := range files {
			args[i] = "--file " + f
		}
		return fmt.Errorf("%s notices are missing from the ledger or older than their wave; run 'impactctl notice restore %s' to put them back, then verify again",
			num(int64(bad)), strings.Join(args, " "))
	}
	return nil
}

// sendVerify streams one outbox file's lines. Errors name the file and
// line, never a value from it.
func sendVerify(stream impactv1.NoticeService_VerifyNoticesClient, incident, name string, sent *[]waveLine) error {
	return readOutbox(name, func(line int, l outboxLine) error {
		if l.IncidentID != incident {
			return fmt.Errorf("%s line %d: the line is of another incident than --incident", name, line)
		}
		if err := stream.Send(&impactv1.VerifyNoticesRequest{
			IncidentId: l.IncidentID, SubjectId: l.SubjectID, Version: l.Version, NoticeId: l.NoticeID,
		}); err != nil {
			return err
		}
		*sent = append(*sent, waveLine{File: name, Line: line})
		return nil
	})
}
