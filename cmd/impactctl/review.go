package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
)

// reasonCorrectionsNotAccepted is the ErrorInfo reason of a publish refused
// for correcting more notified patients than accepted.
const reasonCorrectionsNotAccepted = "CORRECTIONS_NOT_ACCEPTED"

// renderNotifiedChanges writes the contradiction report in plain words,
// the first thing a diff shows: how many patients already notified would
// get a correction, how, and which --accept-corrections a publish needs.
func renderNotifiedChanges(w io.Writer, d *impactv1.DiffSnapshotsResponse) error {
	nc := d.GetNotifiedChanges()
	if nc == nil {
		return nil
	}
	if nc.GetTotal() == 0 {
		_, err := fmt.Fprintf(w, "No patient already notified would get a correction (%s notified, none changes status at v%d).\n\n",
			num(nc.GetNotified()), d.GetVersion())
		return err
	}
	parts := make([]string, 0, len(nc.GetTransitions()))
	for _, t := range nc.GetTransitions() {
		parts = append(parts, fmt.Sprintf("%s %s -> %s", num(t.GetCount()), statusName(t.GetFrom()), statusName(t.GetTo())))
	}
	patients := "patients"
	if nc.GetTotal() == 1 {
		patients = "patient"
	}
	fmt.Fprintf(w, "%s %s already notified would get a correction: %s.\n", num(nc.GetTotal()), patients, strings.Join(parts, ", "))
	if len(nc.GetCohorts()) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "COHORT\tNOTIFIED AS\tAT v"+strconv.Itoa(int(d.GetVersion()))+"\tPATIENTS")
		for _, c := range nc.GetCohorts() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.GetCohortId(), statusName(c.GetFrom()), statusName(c.GetTo()), num(c.GetCount()))
		}
		tw.Flush()
	}
	_, err := fmt.Fprintf(w, "Publishing v%d needs --accept-corrections %d: each of them would be owed a correction notice.\n\n",
		d.GetVersion(), nc.GetTotal())
	return err
}

// correctionsRefused turns a CORRECTIONS_NOT_ACCEPTED refusal into the
// operator's next steps: the count, and the diff to review it with (the
// refusal's metadata names the version and the visible version expected,
// which override version and against). rerun says what to run again with
// the count. An UNAVAILABLE or DEADLINE_EXCEEDED answer to a publish leaves
// its outcome open (the flip may have been made): the error says to look
// before running it again. Other errors are returned as they are.
func correctionsRefused(err error, incident string, version, against uint32, rerun string) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if c := st.Code(); c == codes.Unavailable || c == codes.DeadlineExceeded {
		return fmt.Errorf("%w; the publish may have been made: see 'impactctl snapshot list --incident %s' and run it again only if the visible version did not move", err, incident)
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetReason() != reasonCorrectionsNotAccepted {
			continue
		}
		md := info.GetMetadata()
		meta := func(k string, dflt uint32) uint32 {
			if v, err := strconv.ParseUint(md[k], 10, 32); err == nil {
				return uint32(v)
			}
			return dflt
		}
		version, against = meta("version", version), meta("expected_visible_version", against)
		n := md["corrections"]
		return fmt.Errorf("refused: %s already-notified patients would get a correction, %s accepted; "+
			"review 'impactctl snapshot diff --incident %s --version %d --against %d', then %s with --accept-corrections %s",
			n, md["accepted"], incident, version, against, rerun, n)
	}
	return err
}
