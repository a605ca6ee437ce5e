package zapslog

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestForwardsAtOrAboveMin(t *testing.T) {
	var b strings.Builder
	log := slog.New(slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug}))
	z := New(log, zapcore.WarnLevel, "etcd-client").With(zap.String("endpoint", "http://e:2379"))

	z.Info("routine chatter")
	z.Warn("retrying", zap.Duration("backoff", 250*time.Millisecond), zap.Error(errors.New("connection refused")))
	z.Error("failed", zap.Int("attempt", 3))

	out := b.String()
	if strings.Contains(out, "routine chatter") {
		t.Errorf("info entry forwarded below the warn minimum:\n%s", out)
	}
	for _, want := range []string{
		`level=WARN msg=retrying component=etcd-client endpoint=http://e:2379 backoff=250ms error="connection refused"`,
		`level=ERROR msg=failed component=etcd-client endpoint=http://e:2379 attempt=3`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestNilLoggerDiscards(t *testing.T) {
	New(nil, zapcore.DebugLevel, "x").Error("nobody listens") // must not panic
}
