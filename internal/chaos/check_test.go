package chaos

import (
	"os"
	"strings"
	"testing"
	"time"
)

// truth of the hand-made histories: v1 has alice affected, v2 under review,
// v3 not affected (absent); bob is never in a roster.
var handTruth = Truth{
	1: {"alice": "AFFECTED"},
	2: {"alice": "UNDER_REVIEW"},
	3: {},
}

func at(call, ret int) (time.Duration, time.Duration) {
	return time.Duration(call) * time.Millisecond, time.Duration(ret) * time.Millisecond
}

func claim(client, call, ret int, action string, v uint32, status, id string) Op {
	c, r := at(call, ret)
	return Op{Client: client, Replica: "A", Kind: KindClaim, Subject: "alice", Call: c, Return: r, Outcome: OK,
		Action: action, Pinned: v, Status: status, NoticeID: id}
}

func lostClaim(client, call, ret int) Op {
	c, r := at(call, ret)
	return Op{Client: client, Replica: "A", Kind: KindClaim, Subject: "alice", Call: c, Return: r, Outcome: Unknown, Code: "Unavailable"}
}

// read of alice at visible version v, from pin (pinned, id).
func read(client, call, ret int, v, pinned uint32, id string) Op {
	c, r := at(call, ret)
	visible, _ := handTruth.status(v, "alice")
	status := visible
	if pinned > 0 {
		status, _ = handTruth.status(pinned, "alice")
	}
	return Op{Client: client, Replica: "B", Kind: KindRead, Subject: "alice", Call: c, Return: r, Outcome: OK,
		Version: v, Pinned: pinned, NoticeID: id, Status: status, VisibleStatus: visible,
		UpdatePending: pinned > 0 && status != visible}
}

func publish(client, call, ret int, v, expect uint32, o Outcome) Op {
	c, r := at(call, ret)
	op := Op{Client: client, Replica: "A", Kind: KindPublish, Call: c, Return: r, Publish: v, Expect: expect, Outcome: o}
	if o != OK {
		op.Code = "Unavailable"
		if o == Failed {
			op.Code = "FailedPrecondition"
		}
	}
	return op
}

func failedRead(client, call, ret int, code string, atLeast uint32) Op {
	c, r := at(call, ret)
	return Op{Client: client, Replica: "B", Kind: KindRead, Subject: "alice", Call: c, Return: r, Outcome: Unknown, Code: code, AtLeast: atLeast}
}

func withAtLeast(op Op, v uint32) Op { op.AtLeast = v; return op }

func goodHistory() []Op {
	return []Op{
		read(1, 0, 5, 1, 0, ""),
		claim(0, 6, 10, "SEND", 1, "AFFECTED", "n1"),
		read(1, 7, 9, 1, 0, ""), // concurrent with the claim: either pin is fine
		read(1, 11, 12, 1, 1, "n1"),
		claim(0, 13, 14, "ALREADY_SENT", 1, "AFFECTED", "n1"),
		publish(2, 15, 20, 2, 1, OK),
		publish(3, 16, 18, 2, 1, Failed),                  // lost the compare-and-set
		read(1, 17, 19, 1, 1, "n1"),                       // before the flip
		withAtLeast(read(1, 21, 22, 2, 1, "n1"), 2),       // after it: v2, pending
		failedRead(1, 22, 23, "OutOfRange", 3),            // v3 not published yet
		lostClaim(0, 24, 30),                              // impactd killed mid-claim
		failedRead(1, 31, 32, "Unavailable", 0),           // while it restarts
		read(1, 33, 34, 2, 2, "n2"),                       // the lost claim had pinned v2
		claim(0, 35, 36, "SEND", 2, "UNDER_REVIEW", "n2"), // its re-run, same key: same answer
		publish(2, 37, 40, 3, 2, Unknown),                 // took effect, as reads show
		read(1, 41, 42, 3, 2, "n2"),
		claim(0, 43, 44, "SEND", 3, NotAffected, "n3"), // correction to not affected
		withAtLeast(read(1, 45, 46, 3, 3, "n3"), 3),
	}
}

func TestCheckAcceptsAGoodHistory(t *testing.T) {
	rep := Check(Input{History: goodHistory(), Truth: handTruth, Visible: 1})
	if !rep.OK() {
		for _, v := range rep.Violations {
			t.Error(v)
		}
	}
	if rep.Claims != 4 || rep.Reads != 8 || rep.Publishes != 1 {
		t.Fatalf("counted %d claims, %d reads, %d publishes", rep.Claims, rep.Reads, rep.Publishes)
	}
}

func TestCheckCatchesBadHistories(t *testing.T) {
	good := goodHistory()
	replace := func(i int, op Op) []Op {
		h := append([]Op(nil), good...)
		h[i] = op
		return h
	}
	drop := func(i int) []Op {
		h := append([]Op(nil), good[:i]...)
		return append(h, good[i+1:]...)
	}
	cases := []struct {
		name    string
		history []Op
		rule    string
	}{
		// A read that starts after the claim returned misses its pin.
		{"stale read after claim", replace(3, read(1, 11, 12, 1, 0, "")), "ledger"},
		// A second notice at an older version: the pin moved backwards.
		{"pin backwards", append(append([]Op(nil), good...), claim(0, 50, 51, "SEND", 2, "UNDER_REVIEW", "n4")), "ledger"},
		// Without the lost claim, nothing could have pinned v2 before the re-run.
		{"pin from nowhere", drop(10), "ledger"},
		// A different notice id for the same pin.
		{"notice id changed", replace(12, read(1, 33, 34, 2, 2, "other")), "ledger"},
		// A read that starts after the publish of v2 returned answers v1
		// (on another replica than the publisher's).
		{"stale read after publish", replace(8, read(1, 21, 22, 1, 1, "n1")), "visibility"},
		// Long after: the visible version went below an acknowledged publish.
		{"visible goes down", append(append([]Op(nil), good...), read(1, 50, 51, 1, 3, "n3")), "visibility"},
		// An answer at a version whose publish had not even been called
		// when the read returned.
		{"version from the future", replace(3, read(1, 11, 12, 2, 1, "n1")), "visibility"},
		// An answer naming a pin whose claim had not been called when the
		// read returned.
		{"pin from the future", replace(0, read(1, 0, 5, 1, 1, "n1")), "ledger"},
		// A version visible with no publish of it.
		{"never published", replace(5, publish(2, 15, 20, 2, 1, Failed)), "visibility"},
		// A compare-and-set that succeeded against the wrong expected version.
		{"publish without cas", replace(6, publish(3, 16, 18, 2, 1, OK)), "visibility"},
		// Answer content from another version than the one it names.
		{"mixed answer", replace(3, func() Op { o := read(1, 11, 12, 1, 1, "n1"); o.Status = "UNDER_REVIEW"; return o }()), "mix"},
		{"not affected for affected", replace(0, func() Op { o := read(1, 0, 5, 1, 0, ""); o.Status = NotAffected; return o }()), "fail-closed"},
		{"pending flag wrong", replace(8, func() Op { o := withAtLeast(read(1, 21, 22, 2, 1, "n1"), 2); o.UpdatePending = false; return o }()), "mix"},
		{"internal error", replace(11, failedRead(1, 31, 32, "Internal", 0)), "read-error"},
		{"at_least_version ignored", replace(17, withAtLeast(read(1, 45, 46, 3, 3, "n3"), 4)), "monotonic"},
		{"reader goes back", append(append([]Op(nil), good...), withAtLeast(read(1, 50, 51, 2, 3, "n3"), 1)), "monotonic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep := Check(Input{History: tc.history, Truth: handTruth, Visible: 1})
			found := false
			for _, v := range rep.Violations {
				if v.Rule == tc.rule {
					found = true
					if len(v.Ops) == 0 {
						t.Errorf("violation %s names no operation", v)
					}
				}
			}
			if !found {
				t.Fatalf("no %s violation; got %v", tc.rule, rep.Violations)
			}
		})
	}
}

func TestCheckWritesTheVisualization(t *testing.T) {
	dir := t.TempDir()
	h := append(append([]Op(nil), goodHistory()...), claim(0, 50, 51, "SEND", 2, "UNDER_REVIEW", "n4"))
	rep := Check(Input{History: h, Truth: handTruth, Visible: 1, VisualizeDir: dir})
	if rep.OK() {
		t.Fatal("bad history passed")
	}
	v := rep.Violations[0]
	if v.Visualization == "" {
		t.Fatalf("no visualization for %s", v)
	}
	b, err := os.ReadFile(v.Visualization)
	if err != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("visualization %s: %v, %.80q", v.Visualization, err, b)
	}
	if s := v.String(); !strings.Contains(s, "SEND v2") || !strings.Contains(s, "alice") {
		t.Fatalf("violation text does not show the offending claim:\n%s", s)
	}
}

func TestLostPinsComparesTheNewestAcknowledgedPin(t *testing.T) {
	h := []Op{
		claim(0, 0, 1, "SEND", 1, "AFFECTED", "n1"),
		claim(0, 2, 3, "SEND", 2, "UNDER_REVIEW", "n2"),
		lostClaim(0, 4, 5), // unacknowledged: may be lost
		func() Op { o := claim(0, 6, 7, "NONE", 3, NotAffected, ""); o.Subject = "bob"; return o }(),
	}
	if got := AckedPins(h)["alice"]; got.Pinned != 2 || got.NoticeID != "n2" {
		t.Fatalf("newest acknowledged pin %v", got)
	}
	if lost := LostPins(h, map[string]uint32{"alice": 2}); len(lost) != 0 {
		t.Fatalf("nothing lost, got %v", lost)
	}
	if lost := LostPins(h, map[string]uint32{"alice": 1}); len(lost) != 1 || lost[0].Pinned != 2 {
		t.Fatalf("pin v2 lost, got %v", lost)
	}
	if lost := LostPins(h, map[string]uint32{"alice": 0, "bob": 0}); len(lost) != 1 {
		t.Fatalf("a NONE is no pin; want only alice lost, got %v", lost)
	}
	if lost := LostPins(h, map[string]uint32{"bob": 0}); len(lost) != 0 {
		t.Fatalf("alice was not read: nothing to compare, got %v", lost)
	}
}

// inFlight is a write in flight from 10 to 30 ms with reads around it: on
// replica A, answering the new value at 12..14; on replica B, answering the
// old one at 15..17 (after A's answer, before the acknowledgement).
func inFlight(write Op, newRead, oldRead Op) []Op {
	newRead.Replica, oldRead.Replica = "A", "B"
	return []Op{write, newRead, oldRead}
}

// TestCheckAllowsOldAnswersDuringAWrite: while a write is in flight a read
// may answer the old value after another read answered the new one (the
// lease protocol's guarantee starts at the acknowledgement); a read that
// starts after the acknowledgement may not.
func TestCheckAllowsOldAnswersDuringAWrite(t *testing.T) {
	cases := []struct {
		name    string
		history []Op
		after   Op // a read started after the write's acknowledgement, missing it
		rule    string
	}{
		{"publish", inFlight(publish(2, 10, 30, 2, 1, OK), read(1, 12, 14, 2, 0, ""), read(3, 15, 17, 1, 0, "")),
			read(3, 31, 32, 1, 0, ""), "visibility"},
		{"claim", inFlight(claim(0, 10, 30, "SEND", 1, "AFFECTED", "n1"), read(1, 12, 14, 1, 1, "n1"), read(3, 15, 17, 1, 0, "")),
			read(3, 31, 32, 1, 0, ""), "ledger"},
		{"already sent", append([]Op{claim(0, 0, 5, "SEND", 1, "AFFECTED", "n1"), publish(2, 6, 7, 2, 1, OK)},
			inFlight(claim(0, 10, 30, "SEND", 2, "UNDER_REVIEW", "n2"), read(1, 12, 14, 2, 2, "n2"), read(3, 15, 17, 2, 1, "n1"))...),
			read(3, 31, 32, 2, 1, "n1"), "ledger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if rep := Check(Input{History: tc.history, Truth: handTruth, Visible: 1}); !rep.OK() {
				t.Fatalf("an old answer during the write was flagged: %v", rep.Violations)
			}
			rep := Check(Input{History: append(append([]Op(nil), tc.history...), tc.after), Truth: handTruth, Visible: 1})
			found := false
			for _, v := range rep.Violations {
				found = found || v.Rule == tc.rule
			}
			if !found {
				t.Fatalf("a read started after the acknowledgement answered the old value: no %s violation; got %v", tc.rule, rep.Violations)
			}
		})
	}
}
