package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	impactv1 "github.com/impact-health/impact/gen/impact/v1"
	"github.com/impact-health/impact/internal/demo"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// TestNoRawSubjectIDsInRedisOrLogs (invariant 7, no raw identifiers at rest
// or in logs): after an end-to-end run on the Redis store (uploads, a
// rejected upload, publishes, claims over gRPC, the claim stream and REST
// with idempotency keys that embed subject ids, status reads over both
// transports, rate limiting on), no Redis key, field or value, no byte of
// the AOF and no line of impactd's logs holds a raw subject id, a token or a
// notice text.
func TestNoRawSubjectIDsInRedisOrLogs(t *testing.T) {
	srv := startDurableRedis(t)
	data := t.TempDir()
	p := startImpactd(t, "impactd", data, redisFlags(srv)...) // default rate limits: their keys must be keyed hashes too
	spec := testclient.DemoSpec(t)

	var roster bytes.Buffer
	if _, err := demo.WriteRoster(&roster, demo.RosterOptions{N: 3000, Seed: 11}); err != nil {
		t.Fatal(err)
	}
	ids := rosterSubjects(t, roster.Bytes())
	absent := []string{demo.NotAffectedSubject, "patient-9999999"}

	// A rejected upload: the error names rows, never values, and stages
	// nothing.
	bad := append(bytes.Clone(roster.Bytes()), "patient-7654321,infected,northland,\n"...)
	if _, err := p.upload(spec, bad); err == nil || strings.Contains(err.Error(), "patient-7654321") {
		t.Fatalf("bad upload: %v", err)
	}
	ids = append(ids, "patient-7654321")

	p.stageAndPublish(spec, roster.Bytes(), 1)
	// Version 2 drops the first 100 rows after the well-known subjects.
	lines := bytes.SplitAfter(roster.Bytes(), []byte("\n"))
	v2 := bytes.Join(append(lines[:3:3], lines[103:]...), nil)
	p.stageAndPublish(spec, v2, 2)

	// Claims: unary gRPC, the wave stream, and REST, with idempotency keys
	// that contain the subject id.
	var notices []string
	for _, s := range ids[:40] {
		c, err := p.claim(s, "wave-1:"+s)
		if err != nil {
			t.Fatalf("claim: %v", err)
		}
		if c.GetAction() == impactv1.ClaimAction_SEND {
			notices = append(notices, c.GetNotice().GetBody())
		}
	}
	ctx, cancel := callCtx(p.adminToken)
	defer cancel()
	wave, err := impactv1.NewNoticeServiceClient(p.admin).ClaimNotices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ids[40:200] {
		if err := wave.Send(&impactv1.ClaimNoticesRequest{IncidentId: demo.IncidentID, SubjectId: s, IdempotencyKey: "wave-2:" + s}); err != nil {
			t.Fatal(err)
		}
	}
	if err := wave.CloseSend(); err != nil {
		t.Fatal(err)
	}
	for range ids[40:200] {
		if _, err := wave.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range ids[200:220] {
		code, body := rest(t, http.MethodPost, "http://"+p.adminHTTPAddr+"/v1/incidents/"+demo.IncidentID+"/notices:claim", p.adminToken,
			fmt.Sprintf(`{"subject_id":%q,"idempotency_key":"wave-3:%s"}`, s, s))
		if code != http.StatusOK {
			t.Fatalf("REST claim: %d %s", code, body)
		}
	}
	if len(notices) == 0 {
		t.Fatal("no notice was sent")
	}

	// Reads: affected, removed (corrected) and never-listed subjects.
	var toks []string
	for _, s := range append(append([]string{}, ids[:10]...), append(ids[100:110], absent...)...) {
		tok := token(t, data, s)
		toks = append(toks, tok)
		if _, err := p.status(tok, 0); err != nil {
			t.Fatalf("status: %v", err)
		}
		if code, body, _ := p.restStatus(tok, 2); code != http.StatusOK {
			t.Fatalf("REST status: %d %s", code, body)
		}
		if code, body := rest(t, http.MethodGet, "http://"+p.httpAddr+"/v1/status", tok, ""); code != http.StatusOK {
			t.Fatalf("REST list: %d %s", code, body)
		}
	}
	// An unknown incident and a refused token leave log lines too.
	if code, _ := rest(t, http.MethodGet, "http://"+p.httpAddr+"/v1/incidents/no-such-incident/status", toks[0], ""); code != http.StatusNotFound {
		t.Fatalf("unknown incident: %d", code)
	}
	if code, _ := rest(t, http.MethodGet, "http://"+p.httpAddr+"/v1/status", toks[0]+"x", ""); code != http.StatusUnauthorized {
		t.Fatalf("bad token: %d", code)
	}
	ids = append(ids, absent...)
	// Tokens belong nowhere; notice texts are snapshot content (the
	// manifest in Redis holds the spec) but never belong in logs.
	tokens := append(append([]string{}, toks...), p.adminToken)
	noticeText := longestLine(notices[0])

	// Every key, field and value in Redis, read by type (DUMP would hide
	// strings inside LZF-compressed payloads), and the AOF on disk.
	dump := dumpRedis(t, srv.Client(t))
	if len(dump) == 0 {
		t.Fatal("empty Redis dump")
	}
	aof := readTree(t, srv.Dir())
	p.stop() // flush every log line
	logs := []byte(p.logs.String())
	for what, b := range map[string][]byte{"Redis": dump, "the AOF": aof, "impactd's logs": logs} {
		if i := bytes.Index(b, []byte("patient-")); i >= 0 {
			t.Errorf("%s holds a raw subject id: ...%q...", what, b[max(0, i-40):min(len(b), i+40)])
		}
		for _, id := range ids {
			if bytes.Contains(b, []byte(id)) {
				t.Errorf("%s holds subject id %s", what, id)
				break
			}
		}
		for _, s := range tokens {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a token", what)
			}
		}
		if bytes.Contains(b, []byte("Bearer")) {
			t.Errorf("%s holds an Authorization header", what)
		}
	}
	if bytes.Contains(logs, []byte(noticeText)) {
		t.Error("impactd's logs hold notice text")
	}
	t.Logf("checked %d subject ids against %d bytes of Redis data, %d bytes of AOF, %d bytes of logs", len(ids), len(dump), len(aof), len(logs))
}

// rosterSubjects returns the subject ids of a roster CSV.
func rosterSubjects(t *testing.T, csv []byte) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(bytes.NewReader(csv))
	sc.Scan() // header
	for sc.Scan() {
		id, _, _ := strings.Cut(sc.Text(), ",")
		ids = append(ids, id)
	}
	if len(ids) < 300 {
		t.Fatalf("roster has %d rows", len(ids))
	}
	return ids
}

// dumpRedis reads every key of every database and returns key names,
// fields, members and values, one per line.
func dumpRedis(t *testing.T, c *redis.Client) []byte {
	t.Helper()
	ctx := context.Background()
	var out bytes.Buffer
	keys := 0
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		keys++
		typ, err := c.Type(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&out, "%s %s\n", typ, k)
		var vals []string
		switch typ {
		case "none":
			// Expired between SCAN and TYPE (rate-limit keys carry a
			// TTL): its name is dumped above and it holds nothing more.
		case "string":
			v, err := c.Get(ctx, k).Result()
			if errors.Is(err, redis.Nil) {
				break // expired between TYPE and GET, as above
			}
			if err != nil {
				t.Fatal(err)
			}
			vals = []string{v}
		case "hash":
			m, err := c.HGetAll(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			for f, v := range m {
				vals = append(vals, f, v)
			}
		case "set":
			if vals, err = c.SMembers(ctx, k).Result(); err != nil {
				t.Fatal(err)
			}
		case "zset":
			if vals, err = c.ZRange(ctx, k, 0, -1).Result(); err != nil {
				t.Fatal(err)
			}
		case "list":
			if vals, err = c.LRange(ctx, k, 0, -1).Result(); err != nil {
				t.Fatal(err)
			}
		case "stream":
			msgs, err := c.XRange(ctx, k, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				vals = append(vals, m.ID)
				for f, v := range m.Values {
					vals = append(vals, f, fmt.Sprint(v))
				}
			}
		default:
			t.Fatalf("key of unexpected type %s", typ)
		}
		for _, v := range vals {
			out.WriteString(v)
			out.WriteByte('\n')
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	if keys < 10 {
		t.Fatalf("only %d keys in Redis", keys)
	}
	return out.Bytes()
}

// readTree concatenates every regular file under dir (the Redis data
// directory: AOF parts, manifest, log).
func readTree(t *testing.T, dir string) []byte {
	t.Helper()
	var out bytes.Buffer
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(&out, f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// longestLine is the longest line of s: a phrase specific to one notice.
func longestLine(s string) string {
	best := ""
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); len(l) > len(best) {
			best = l
		}
	}
	return best
}
