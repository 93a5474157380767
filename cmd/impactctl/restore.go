package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

func (a *app) restoreCommand() *cobra.Command {
	var files []string
	cmd := &cobra.Command{
		Use:   "restore --file WAVE.jsonl [--file ...]",
		Short: "Re-import wave outbox files into the notice ledger (after a Redis failover lost pins)",
		Long: `Restore reads the outbox files that 'notice claim --out' wrote and sends every
line back to Impact, which re-creates each pin the ledger lost, so that every
notified patient is again answered from the version of their email.

Forward-only and idempotent: a pin that is already there, or a newer notice
for the same patient, is kept. Restore every wave file, in any order.`,
		Args: cobra.NoArgs,
		RunE: a.action(func(cmd *cobra.Command, _ []string) error {
			return a.restore(cmd.Context(), files)
		}),
	}
	cmd.Flags().StringArrayVar(&files, "file", nil, "wave outbox file (JSON lines); repeatable")
	markRequired(cmd, "file")
	cmd.MarkFlagFilename("file", "jsonl")
	return cmd
}

func (a *app) restore(ctx context.Context, files []string) error {
	c, err := a.notices()
	if err != nil {
		return err
	}
	ctx, cancel := a.streamCtx(ctx)
	defer cancel()
	stream, err := c.RestoreNotices(ctx)
	if err != nil {
		return err
	}
	sent := 0
	for _, name := range files {
		if err := a.sendOutbox(stream, name, &sent); err != nil {
			_ = stream.CloseSend()
			return err
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if a.jsonOut {
		return a.printProto(resp)
	}
	fmt.Fprintf(a.stdout, "restored %s notices from %d file(s)\n", num(int64(sent)), len(files))
	fmt.Fprintf(a.stdout, "  restored     %s  pins written again\n", num(int64(resp.GetRestored())))
	fmt.Fprintf(a.stdout, "  present      %s  already in the ledger\n", num(int64(resp.GetPresent())))
	fmt.Fprintf(a.stdout, "  kept newer   %s  a newer notice was in the ledger\n", num(int64(resp.GetKeptNewer())))
	return nil
}

// sendOutbox streams one outbox file. Errors name the file and line, never
// a value from it.
func (a *app) sendOutbox(stream impactv1.NoticeService_RestoreNoticesClient, name string, sent *int) error {
	return readOutbox(name, func(line int, l outboxLine) error {
		at, err := time.Parse(time.RFC3339Nano, l.NotifiedAt)
		if err != nil {
			return fmt.Errorf("%s line %d: notified_at is not a time", name, line)
		}
		st, ok := impactv1.Status_value[l.Status]
		if !ok {
			return fmt.Errorf("%s line %d: unknown status", name, line)
		}
		if err := stream.Send(&impactv1.RestoreNoticesRequest{
			IncidentId: l.IncidentID, SubjectId: l.SubjectID, Version: l.Version, NoticeId: l.NoticeID,
			Status: impactv1.Status(st), NotifiedAt: timestamppb.New(at),
		}); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		*sent++
		return nil
	})
}

// readOutbox calls fn with every line of a wave outbox file and its 1-based
// line number (blank lines skipped). Errors name the file and line, never a
// value from it.
func readOutbox(name string, fn func(line int, l outboxLine) error) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var l outboxLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return fmt.Errorf("%s line %d: not an outbox line", name, line)
		}
		if err := fn(line, l); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
