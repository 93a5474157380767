package server_test

import "testing"

// TestUploadYieldsToThePacer: an upload through the ops listener yields to
// the app's one Pacer (the one the patient listener counts its calls into),
// and with no patient call in flight it never pauses.
func TestUploadYieldsToThePacer(t *testing.T) {
	e, _ := startPublished(t)
	if e.App.Pacer == nil {
		t.Fatal("the app has no Pacer by default")
	}
	if s := e.App.Pacer.Stats(); s.Yields == 0 || s.Pauses != 0 {
		t.Fatalf("pacer after an upload on an idle server: %+v, want yields and no pause", s)
	}
}
