package storetest

import (
	"context"
	"testing"

	"github.com/impact-health/impact/internal/store"
)

func testCanceledContext(t *testing.T, s store.Store) {
	const inc = "canceled"
	m := manifest(inc, 1)
	e := newKeyGen(190).entries(10, m)
	Load(t, s, inc, m, e, 10)
	Publish(t, s, inc, 1, 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Read(ctx, inc, e[0].Key, nil); err == nil {
		t.Error("read with a canceled context succeeded")
	}
	Load(t, s, inc, m, e, 10)
	if _, err := s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 2, ExpectVisible: 1, Actor: "ops", At: T0}); err == nil {
		t.Error("publish with a canceled context succeeded")
	}
	if h, _ := s.Head(context.Background(), inc); h.Visible != 1 {
		t.Errorf("a publish with a canceled context made v%d visible", h.Visible)
	}
	if err := s.ClaimPin(ctx, inc, e[0].Key, nil, PinAt(1, e[0].Record, "n"), store.IdemKey{}); err == nil {
		t.Error("claim with a canceled context succeeded")
	}
	if v := Read(t, s, inc, e[0].Key, nil); v.Pin != nil {
		t.Errorf("a claim with a canceled context left pin %s", fmtPin(v.Pin))
	}
}

func testClosedStore(t *testing.T, s store.Store) {
	ctx := context.Background()
	const inc = "closed"
	m := manifest(inc, 1)
	e := newKeyGen(200).entries(10, m)
	Load(t, s, inc, m, e, 10)
	Publish(t, s, inc, 1, 0)
	st, err := s.Stage(ctx, stageReq(inc))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	wantErr(t, "Ping", s.Ping(ctx), store.ErrUnavailable)
	_, err = s.Read(ctx, inc, e[0].Key, nil)
	wantErr(t, "Read", err, store.ErrUnavailable)
	_, err = s.Head(ctx, inc)
	wantErr(t, "Head", err, store.ErrUnavailable)
	_, err = s.Records(ctx, inc, 1, []store.Key{e[0].Key})
	wantErr(t, "Records", err, store.ErrUnavailable)
	_, err = s.Publish(ctx, store.PublishRequest{Incident: inc, Version: 1, ExpectVisible: 0, Actor: "ops", At: T0})
	wantErr(t, "Publish", err, store.ErrUnavailable)
	err = s.ClaimPin(ctx, inc, e[0].Key, nil, PinAt(1, e[0].Record, "n"), store.IdemKey{})
	wantErr(t, "ClaimPin", err, store.ErrUnavailable)
	_, err = s.Stage(ctx, stageReq(inc))
	wantErr(t, "Stage", err, store.ErrUnavailable)
	wantErr(t, "Stager.Put", st.Put(ctx, e), store.ErrUnavailable)
}
