package headers

import "slices"

// Header is one name/value pair to set on the upstream request.
type Header struct {
	Name  string
	Value string
}

// Removals computes which request headers Envoy must remove before the
// request goes upstream (DESIGN §6 step 8), deny by default:
//
//   - every client header not on the allowlist (ClientAllowed), including
//     names that are not valid lower-case tokens;
//   - always the credential-like ones (IsAlwaysStripped) and the config's
//     static header names, even when the client did not send them, so a
//     header Envoy adds later or did not report cannot leak through;
//   - never a pseudo or transport header (IsTransport): Envoy refuses to
//     remove those and needs them to frame the request;
//   - never a name in set: Envoy applies headers_to_remove after the headers
//     it sets, so removing an injected name would delete the injected value.
//     Setting uses OVERWRITE_IF_EXISTS_OR_ADD, which already replaces any
//     client value of that name.
//
// client holds the request's header names (values are ignored). The result
// is sorted and free of duplicates so the Envoy response is deterministic.
func Removals(client map[string]string, staticNames []string, set []Header) []string {
	out := make([]string, 0, len(alwaysStrip)+len(staticNames)+4)
	isSet := func(n string) bool {
		for i := range set {
			if set[i].Name == n {
				return true
			}
		}
		return false
	}
	add := func(n string) {
		if IsTransport(n) || isSet(n) {
			return
		}
		out = append(out, n)
	}
	for _, n := range alwaysStrip {
		add(n)
	}
	for _, n := range staticNames {
		add(lowerASCII(n))
	}
	for n := range client {
		ln := lowerASCII(n)
		if ClientAllowed(ln) {
			continue
		}
		// Envoy matches names case-insensitively and reports them in lower
		// case; the lower-case form is the canonical one.
		add(ln)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// lowerASCII lower-cases ASCII letters only. strings.ToLower would rewrite
// invalid UTF-8 to U+FFFD and so name a different header than the client
// sent.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if 'A' <= b[j] && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}
