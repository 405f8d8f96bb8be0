package envoystandin

import (
	"net"
	"testing"
	"time"
)

func TestBuildCheckRequest(t *testing.T) {
	hs := headerList{{":authority", "gw"}, {":path", "/p?q=1"}, {":method", "GET"}, {":scheme", "http"},
		{"x-a", "1"}, {"x-a", "2"}, {"x-bad", "a\xffb"}, {partialBodyHeader, "true"}}
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}
	dst := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10000}
	req := buildCheckRequest(&extAuthzConfig{}, hs, "HTTP/1.1", src, dst, time.Unix(1, 0), map[string]string{"k": "v"})
	h := req.GetAttributes().GetRequest().GetHttp()
	if h.GetHeaders()["x-a"] != "1,2" || h.GetHeaders()["x-bad"] != "a!b" || h.GetHeaders()[":path"] != "/p?q=1" {
		t.Errorf("headers = %v", h.GetHeaders())
	}
	if _, ok := h.GetHeaders()[partialBodyHeader]; ok {
		t.Error("client x-envoy-auth-partial-body forwarded to ext_authz")
	}
	if req.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetPortValue() != 4000 ||
		req.GetAttributes().GetDestination().GetAddress().GetSocketAddress().GetPortValue() != 10000 {
		t.Errorf("peers = %v %v", req.GetAttributes().GetSource(), req.GetAttributes().GetDestination())
	}
	if req.GetAttributes().GetRequest().GetTime().GetSeconds() != 1 || req.GetAttributes().GetContextExtensions()["k"] != "v" {
		t.Errorf("time/context = %v", req.GetAttributes())
	}

	raw := buildCheckRequest(&extAuthzConfig{encodeRawHeaders: true}, hs, "HTTP/2", src, dst, time.Unix(1, 0), nil)
	rh := raw.GetAttributes().GetRequest().GetHttp()
	if len(rh.GetHeaders()) != 0 || len(rh.GetHeaderMap().GetHeaders()) != len(hs)-1 {
		t.Fatalf("encode_raw_headers: headers %v header_map %v", rh.GetHeaders(), rh.GetHeaderMap())
	}
	if e := rh.GetHeaderMap().GetHeaders()[5]; e.GetKey() != "x-a" || string(e.GetRawValue()) != "2" {
		t.Errorf("header_map entry = %v", e)
	}
}

func TestAuthzErrorModes(t *testing.T) {
	hs := headerList{}
	if out := authzError(&extAuthzConfig{statusOnError: 503}, &hs); out.allow || out.status != 503 {
		t.Errorf("fail closed = %+v", out)
	}
	out := authzError(&extAuthzConfig{failureModeAllow: true, failureModeAllowHeaderAdd: true}, &hs)
	if v, _ := hs.get("x-envoy-auth-failure-mode-allowed"); !out.allow || v != "true" {
		t.Errorf("failure_mode_allow = %+v, header %q", out, v)
	}
	if !validHeader("x-ok", "v") || validHeader("bad name", "v") || validHeader("x", "a\r\nb") || validHeader("", "v") {
		t.Error("validHeader")
	}
}
