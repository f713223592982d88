package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
)

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("unknown level %q (debug, info, warn, error)", s)
	}
	return l, nil
}

// NewLogger builds the agent's structured logger from the configuration.
func NewLogger(cfg Config, w io.Writer) *slog.Logger {
	level, err := parseLevel(cfg.LogLevel)
	if err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(NestComponents(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(NestComponents(slog.NewTextHandler(w, opts)))
}

// NestComponents makes a handler keep one "component" attribute per record:
// a logger derived with With("component", "agent") and then
// With("component", "nexo") logs component=agent/nexo, and repeating a
// component ("nexo" twice) logs it once, instead of the key appearing twice.
func NestComponents(h slog.Handler) slog.Handler { return &componentHandler{root: h, h: h} }

type componentHandler struct {
	root      slog.Handler // without the component and attributes below
	component string
	attrs     []slog.Attr  // the other attributes, in order
	h         slog.Handler // root with component, then attrs
}

func (c *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return c.h.Enabled(ctx, l)
}

func (c *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	return c.h.Handle(ctx, r)
}

func (c *componentHandler) WithAttrs(as []slog.Attr) slog.Handler {
	comp, attrs := c.component, slices.Clone(c.attrs)
	for _, a := range as {
		if a.Key != "component" {
			attrs = append(attrs, a)
			continue
		}
		v := a.Value.String()
		switch {
		case comp == "":
			comp = v
		case comp != v && !strings.HasSuffix(comp, "/"+v):
			comp += "/" + v
		}
	}
	h := c.root
	if comp != "" {
		h = h.WithAttrs([]slog.Attr{slog.String("component", comp)})
	}
	if len(attrs) > 0 {
		h = h.WithAttrs(attrs)
	}
	return &componentHandler{root: c.root, component: comp, attrs: attrs, h: h}
}

// WithGroup ends the nesting: attributes after a group belong to it.
func (c *componentHandler) WithGroup(name string) slog.Handler { return c.h.WithGroup(name) }
