package xds

import "testing"

func TestParseUpstream(t *testing.T) {
	tests := []struct {
		in   string
		want upstream
		bad  bool
	}{
		{in: "https://mcp.example.com/v1/mcp", want: upstream{TLS: true, Host: "mcp.example.com", Port: 443, HostPort: "mcp.example.com", BasePath: "/v1/mcp"}},
		{in: "https://MCP.Example.com", want: upstream{TLS: true, Host: "mcp.example.com", Port: 443, HostPort: "mcp.example.com", BasePath: "/"}},
		{in: "https://api.example.org:8443/", want: upstream{TLS: true, Host: "api.example.org", Port: 8443, HostPort: "api.example.org:8443", BasePath: "/"}},
		{in: "http://127.0.0.1:9000/mcp", want: upstream{Host: "127.0.0.1", Port: 9000, HostPort: "127.0.0.1:9000", BasePath: "/mcp"}},
		{in: "https://[2606:4700::1111]/mcp/", want: upstream{TLS: true, Host: "2606:4700::1111", Port: 443, HostPort: "[2606:4700::1111]", BasePath: "/mcp/"}},
		{in: "https://[2606:4700::1111]:8443/x", want: upstream{TLS: true, Host: "2606:4700::1111", Port: 8443, HostPort: "[2606:4700::1111]:8443", BasePath: "/x"}},
		{in: "https://h.example/a%20b", want: upstream{TLS: true, Host: "h.example", Port: 443, HostPort: "h.example", BasePath: "/a%20b"}},
		{in: "ftp://h.example/", bad: true},
		{in: "https://user:pw@h.example/", bad: true},
		{in: "https://h.example/mcp?x=1", bad: true},
		{in: "https://h.example/mcp?", bad: true},
		{in: "https://h.example/mcp#f", bad: true},
		{in: "https:///mcp", bad: true},
		{in: "https://h.example:0/", bad: true},
		{in: "https://h.example:99999/", bad: true},
		{in: "https://h.example/a/../b", bad: true},
		{in: "https://h.example/a/./b", bad: true},
		{in: "https://h.example//b", bad: true},
		// Rows saved before the API refused encoded dot segments.
		{in: "https://h.example/a/.%2e/b", bad: true},
		{in: "https://h.example/a/%2E%2E/b", bad: true},
		{in: "https://h.example/a/..%2fb", bad: true},
		{in: "https://h.example/a/..;x/b", bad: true},
		{in: "https://h.example/a/%252e%252e/b", bad: true},
		{in: "https://h.example/v1.0/.well-known/mcp", want: upstream{TLS: true, Host: "h.example", Port: 443, HostPort: "h.example", BasePath: "/v1.0/.well-known/mcp"}},
		{in: "mailto:x@h.example", bad: true},
		{in: "//h.example/x", bad: true},
		{in: "not a url", bad: true},
		{in: "", bad: true},
	}
	for _, tc := range tests {
		got, err := parseUpstream(tc.in)
		if tc.bad {
			if err == nil {
				t.Errorf("parseUpstream(%q) = %+v, want error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseUpstream(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
