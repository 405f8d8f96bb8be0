package xds

import (
	"strings"
	"testing"
	"time"
)

// TestOptionsValidation: every bad option is rejected by New with an error
// naming it; the defaults fill every zero field.
func TestOptionsValidation(t *testing.T) {
	ok := func() Options { return Options{Store: newFakeStore(), OAuthServerAddr: "mcpgw:8080"} }
	tests := []struct {
		name   string
		mutate func(*Options)
		want   string
	}{
		{"no store", func(o *Options) { o.Store = nil }, "Store is required"},
		{"no oauth address", func(o *Options) { o.OAuthServerAddr = "" }, "OAuthServerAddr is required"},
		{"oauth address without port", func(o *Options) { o.OAuthServerAddr = "mcpgw" }, "OAuthServerAddr"},
		{"oauth address port 0", func(o *Options) { o.OAuthServerAddr = "mcpgw:0" }, "OAuthServerAddr"},
		{"oauth address bad port", func(o *Options) { o.OAuthServerAddr = "mcpgw:http" }, "OAuthServerAddr"},
		{"listener address not an IP", func(o *Options) { o.ListenerAddress = "envoy.local" }, "ListenerAddress"},
		{"listener port too large", func(o *Options) { o.ListenerPort = 70000 }, "ListenerPort"},
		{"min above max resolve", func(o *Options) { o.MinResolveInterval, o.MaxResolveInterval = time.Hour, time.Minute }, "MinResolveInterval"},
		{"negative timeout", func(o *Options) { o.ExtAuthzTimeout = -time.Second }, "negative duration"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := ok()
			tc.mutate(&o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New() error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
	o, err := ok().withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.ListenerName != DefaultListenerName || o.RouteConfigName != DefaultRouteConfigName || o.ExtAuthzCluster != DefaultExtAuthzCluster ||
		o.OAuthCluster != DefaultOAuthCluster || o.ListenerPort != DefaultListenerPort || o.Resolver == nil || o.Logger == nil || o.Now == nil ||
		o.ResolveGrace != DefaultResolveGrace || o.UpstreamCAFile != DefaultUpstreamCAFile {
		t.Errorf("defaults not applied: %+v", o)
	}
}
