// Package zapslog routes the zap logs of the etcd client and the embedded
// etcd server into a *slog.Logger, so that they land where the rest of weft
// logs go and obey one level. etcd only accepts a *zap.Logger.
package zapslog

import (
	"context"
	"log/slog"
	"sort"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// New returns a zap logger that forwards entries at min or above to log,
// naming them with name (e.g. "etcd-client"). etcd logs routine events
// (elections, retries) at info and warn, so callers usually pass warn or
// error to keep weft's output readable.
func New(log *slog.Logger, min zapcore.Level, name string) *zap.Logger {
	if log == nil {
		return zap.NewNop()
	}
	return zap.New(&core{log: log.With("component", name), min: min})
}

type core struct {
	log *slog.Logger
	min zapcore.Level
}

func (c *core) Enabled(l zapcore.Level) bool { return l >= c.min }

func (c *core) With(fields []zapcore.Field) zapcore.Core {
	return &core{log: c.log.With(attrs(fields)...), min: c.min}
}

func (c *core) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *core) Write(e zapcore.Entry, fields []zapcore.Field) error {
	c.log.Log(context.Background(), level(e.Level), e.Message, attrs(fields)...)
	return nil
}

func (c *core) Sync() error { return nil }

func level(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

// attrs renders zap fields through zap's own map encoder, which knows every
// field type (durations, errors, stringers, objects).
func attrs(fields []zapcore.Field) []any {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, slog.Any(k, enc.Fields[k]))
	}
	return out
}
