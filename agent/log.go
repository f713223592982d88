package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
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
//
// A derived handler formats its attributes (the wrapped handler's
// WithAttrs) only when it first handles a record: the loggers derived on
// a payment's path for the log lines of its rare turns (an error, a
// duplicate event) cost no formatting when those lines are never written.
// The level is the wrapped handler's: attributes do not change it (true of
// slog's own handlers).
func NestComponents(h slog.Handler) slog.Handler {
	c := &componentHandler{root: h}
	c.once.Do(func() { c.h = h })
	return c
}

type componentHandler struct {
	root      slog.Handler // without the component and attributes below
	component string
	attrs     []slog.Attr // the other attributes, in order
	once      sync.Once
	h         slog.Handler // root with component, then attrs; set by once
}

// handler is root with the component and attributes, built on first use.
func (c *componentHandler) handler() slog.Handler {
	c.once.Do(func() {
		h := c.root
		if c.component != "" {
			h = h.WithAttrs([]slog.Attr{slog.String("component", c.component)})
		}
		if len(c.attrs) > 0 {
			h = h.WithAttrs(c.attrs)
		}
		c.h = h
	})
	return c.h
}

func (c *componentHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return c.root.Enabled(ctx, l)
}

func (c *componentHandler) Handle(ctx context.Context, r slog.Record) error {
	return c.handler().Handle(ctx, r)
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
	return &componentHandler{root: c.root, component: comp, attrs: attrs}
}

// WithGroup ends the nesting: attributes after a group belong to it.
func (c *componentHandler) WithGroup(name string) slog.Handler { return c.handler().WithGroup(name) }
