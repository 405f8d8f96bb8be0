package headers

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	cases := map[string]bool{
		"x-api-key":                          true,
		"authorization":                      true,
		"a":                                  true,
		"x_y.z~1!#$%&'*+^`|":                 true,
		"":                                   false,
		"X-Upper":                            false,
		"x y":                                false,
		"x:y":                                false,
		":path":                              false,
		"x\r\ny":                             false,
		"x\x00":                              false,
		"café":                               false,
		strings.Repeat("a", MaxNameLength+1): false,
		"(x)":                                false,
		"x/y":                                false,
		"x@y":                                false,
		"x,y":                                false,
		"x;y":                                false,
		"x\"y":                               false,
	}
	for n, want := range cases {
		if got := ValidName(n); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", n, got, want)
		}
	}
}

func TestValidValue(t *testing.T) {
	cases := map[string]bool{
		"Bearer abc.def":                      true,
		"":                                    true,
		"a\tb":                                true,
		"a b":                                 true,
		" a":                                  false,
		"a ":                                  false,
		"\ta":                                 false,
		"a\r\nx-evil: 1":                      false,
		"a\nb":                                false,
		"a\x00b":                              false,
		"a\x7fb":                              false,
		"caf\xc3\xa9":                         false,
		strings.Repeat("a", MaxValueLength+1): false,
	}
	for v, want := range cases {
		if got := ValidValue(v); got != want {
			t.Errorf("ValidValue(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestClassification(t *testing.T) {
	for _, n := range []string{"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization", "proxy-authenticate", "proxy-connection"} {
		if !IsHopByHop(n) || !IsReserved(n) {
			t.Errorf("%s should be hop-by-hop and reserved", n)
		}
	}
	for _, n := range []string{":path", ":authority", "host", "content-length", "content-type", "mcp-session-id", "mcp-protocol-version", "mcp-method", "mcp-name", "mcp-anything", "last-event-id", "x-envoy-original-path", "x-forwarded-for", "forwarded", "x-request-id"} {
		if !IsReserved(n) {
			t.Errorf("%s should be reserved", n)
		}
	}
	for _, n := range []string{"authorization", "x-api-key", "x-upstream-key", "x-tenant"} {
		if IsReserved(n) {
			t.Errorf("%s should not be reserved", n)
		}
	}
	for _, n := range []string{"authorization", "cookie", "proxy-authorization", "x-api-key", "x-auth-user", "x-token-id"} {
		if !IsAlwaysStripped(n) {
			t.Errorf("%s should always be stripped", n)
		}
	}
	for _, n := range []string{"x-authx", "accept", "x-tokens"} {
		if IsAlwaysStripped(n) {
			t.Errorf("%s should not always be stripped", n)
		}
	}
	for n, want := range map[string]bool{
		"x-api-key": true, "x-access-token": true, "x-client-secret": true, "x-session": true, "set-cookie": true,
		"x-password": true, "x-auth-user": true, "x-signature": true, "x-jwt-assertion": true,
		"x-tenant": false, "x-region": false, "x-trace": false, "accept-language": false,
	} {
		if got := LooksLikeCredential(n); got != want {
			t.Errorf("LooksLikeCredential(%q) = %v, want %v", n, got, want)
		}
	}
	want := []string{"accept", "accept-encoding", "content-encoding", "content-type", "last-event-id", "mcp-method", "mcp-name", "mcp-protocol-version", "mcp-session-id", "user-agent"}
	if got := ClientAllowlist(); !slices.Equal(got, want) {
		t.Errorf("ClientAllowlist() = %v, want %v", got, want)
	}
	for _, n := range want {
		if !ClientAllowed(n) {
			t.Errorf("ClientAllowed(%q) = false, but it is on the allowlist", n)
		}
	}
	for _, n := range []string{"authorization", "cookie", "x-custom", "origin", "host", "Accept", "mcp-other"} {
		if ClientAllowed(n) {
			t.Errorf("ClientAllowed(%q) = true", n)
		}
	}
}

func TestValidateStaticAndAux(t *testing.T) {
	const secret = "s3cr3t-planted-value"
	cases := []struct {
		name    string
		static  map[string]string
		aux     map[string]string
		wantErr bool
	}{
		{name: "static authorization ok", static: map[string]string{"authorization": "Bearer " + secret}},
		{name: "static api key ok", static: map[string]string{"x-api-key": secret}},
		{name: "static upper-case name", static: map[string]string{"X-Api-Key": secret}, wantErr: true},
		{name: "static hop-by-hop", static: map[string]string{"connection": "close"}, wantErr: true},
		{name: "static proxy-authorization", static: map[string]string{"proxy-authorization": secret}, wantErr: true},
		{name: "static host", static: map[string]string{"host": "evil"}, wantErr: true},
		{name: "static pseudo", static: map[string]string{":authority": "evil"}, wantErr: true},
		{name: "static mcp session", static: map[string]string{"mcp-session-id": "x"}, wantErr: true},
		{name: "static envoy header", static: map[string]string{"x-envoy-upstream-rq-timeout-ms": "1"}, wantErr: true},
		{name: "static CRLF value", static: map[string]string{"x-k": secret + "\r\nx-evil: 1"}, wantErr: true},
		{name: "static too many", static: manyHeaders(MaxHeaders + 1), wantErr: true},
		{name: "aux ok", aux: map[string]string{"x-tenant": "acme"}},
		{name: "aux credential-like", aux: map[string]string{"x-secret": secret}, wantErr: true},
		{name: "aux authorization", aux: map[string]string{"authorization": secret}, wantErr: true},
		{name: "aux cookie", aux: map[string]string{"cookie": secret}, wantErr: true},
		{name: "aux x-auth prefix", aux: map[string]string{"x-auth-user": "bob"}, wantErr: true},
		{name: "aux transfer-encoding", aux: map[string]string{"transfer-encoding": "chunked"}, wantErr: true},
		{name: "aux bad value", aux: map[string]string{"x-tenant": "a\nb"}, wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ValidateStatic(c.static)
			if err == nil {
				err = ValidateAux(c.aux)
			}
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, c.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("error %v does not match ErrInvalid", err)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "evil") {
					t.Errorf("error %q echoes a value", err)
				}
			}
		})
	}
}

func manyHeaders(n int) map[string]string {
	m := map[string]string{}
	for i := 0; i < n; i++ {
		m["x-h"+strings.Repeat("a", i+1)] = "v"
	}
	return m
}

func TestValidateSources(t *testing.T) {
	cases := []struct {
		name     string
		provider bool
		static   []string
		aux      map[string]string
		wantErr  bool
	}{
		{name: "static owns authorization", static: []string{"authorization"}},
		{name: "provider owns authorization", provider: true, aux: map[string]string{"x-tenant": "a"}},
		{name: "provider and static authorization", provider: true, static: []string{"authorization"}, wantErr: true},
		{name: "aux authorization", aux: map[string]string{"authorization": "x"}, wantErr: true},
		{name: "aux duplicates static", static: []string{"x-key"}, aux: map[string]string{"x-key": "v"}, wantErr: true},
		{name: "provider with other static", provider: true, static: []string{"x-api-key"}},
	}
	for _, c := range cases {
		if err := ValidateSources(c.provider, c.static, c.aux); (err != nil) != c.wantErr {
			t.Errorf("%s: err = %v, wantErr %v", c.name, err, c.wantErr)
		}
	}
	if err := ValidateNames([]string{"x-ok", "Authorization"}); err == nil {
		t.Error("ValidateNames accepted an upper-case name")
	}
	if err := ValidateNames([]string{"host"}); err == nil {
		t.Error("ValidateNames accepted host")
	}
}

func TestRemovals(t *testing.T) {
	client := map[string]string{
		":authority": "", ":path": "", ":method": "", "host": "", "content-length": "", "transfer-encoding": "",
		"x-request-id": "", "accept": "", "content-type": "", "mcp-session-id": "", "user-agent": "",
		"authorization": "", "cookie": "", "x-auth-foo": "", "x-token-bar": "", "x-custom": "", "x-forwarded-for": "",
		"x-upstream-key": "", "Weird-Case": "",
	}
	got := Removals(client, []string{"x-upstream-key", "x-other-static"}, []Header{{Name: "authorization", Value: "Bearer u"}})
	want := []string{"cookie", "proxy-authorization", "weird-case", "x-api-key", "x-auth-foo", "x-custom", "x-forwarded-for", "x-other-static", "x-token-bar", "x-upstream-key"}
	if !slices.Equal(got, want) {
		t.Errorf("Removals = %v\nwant      %v", got, want)
	}
}

// FuzzRemovals checks the header policy's invariants for arbitrary client
// header names, static names and injected names.
func FuzzRemovals(f *testing.F) {
	f.Add("authorization,cookie,x-custom,:path,host,accept", "x-api-key", "authorization")
	f.Add("X-Auth-User,mcp-session-id,content-length", "", "")
	f.Add("x-token-a,,te,x-forwarded-for", "Authorization", "x-k")
	f.Fuzz(func(t *testing.T, clientCSV, staticCSV, setCSV string) {
		client := map[string]string{}
		for _, n := range strings.Split(clientCSV, ",") {
			client[n] = "v"
		}
		static := strings.Split(staticCSV, ",")
		var set []Header
		for _, n := range strings.Split(setCSV, ",") {
			set = append(set, Header{Name: n, Value: "v"})
		}
		got := Removals(client, static, set)
		if !slices.IsSorted(got) {
			t.Fatalf("not sorted: %v", got)
		}
		for i := 1; i < len(got); i++ {
			if got[i] == got[i-1] {
				t.Fatalf("duplicate %q", got[i])
			}
		}
		isSet := func(n string) bool {
			return slices.ContainsFunc(set, func(h Header) bool { return h.Name == n })
		}
		for _, n := range got {
			if IsTransport(n) {
				t.Fatalf("removes transport header %q", n)
			}
			if isSet(n) {
				t.Fatalf("removes injected header %q", n)
			}
		}
		must := func(n string) {
			if !IsTransport(n) && !isSet(n) && !slices.Contains(got, n) {
				t.Fatalf("did not remove %q: %v", n, got)
			}
		}
		for n := range client {
			ln := lowerASCII(n)
			if !ClientAllowed(ln) || IsAlwaysStripped(ln) {
				must(ln)
			}
		}
		for _, n := range AlwaysStrip() {
			must(n)
		}
		for _, n := range static {
			must(lowerASCII(n))
		}
	})
}
