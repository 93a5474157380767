package redisstore_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	redisstore "github.com/impact-health/impact/internal/store/redis"
	"github.com/impact-health/impact/internal/testutil/testclient"
)

// While Redis is unreachable go-redis logs dial failures; they must reach
// the structured log as JSON records, not as plain text beside it.
func TestGoRedisLogsThroughSlog(t *testing.T) {
	var buf testclient.LogBuffer
	redisstore.SetLogger(slog.New(slog.NewJSONHandler(&buf, nil)))
	t.Cleanup(func() { redisstore.SetLogger(slog.New(slog.DiscardHandler)) })

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer func() { _ = c.Close() }()
	if err := c.Ping(context.Background()).Err(); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	out := strings.TrimSpace(buf.String())
	if out == "" {
		t.Fatal("go-redis logged nothing about the failed dial")
	}
	for _, line := range strings.Split(out, "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a go-redis line is not a JSON record: %q", line)
		}
		if rec["msg"] != "redis client" || rec["level"] != "WARN" || !strings.Contains(rec["detail"].(string), "dial") {
			t.Errorf("record %v: want msg \"redis client\", level WARN and the dial failure in detail", rec)
		}
	}
}
