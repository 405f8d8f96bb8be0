package signing

import (
	"testing"
)

// FuzzParseJWKS: a JWKS can come from the network (extauthz fetching
// oauthserver's), so hostile input must never panic and every returned
// key must satisfy the size and exponent rules.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","kid":"e"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","kid":"a","use":"sig","alg":"RS256","n":"` + longN + `","e":"AQAB"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := ParseJWKS(b)
		if err != nil {
			return
		}
		for kid, k := range keys {
			if !validKID(kid) || k.N.BitLen() < MinBits || k.N.BitLen() > maxBits || k.E < 3 || k.E%2 == 0 {
				t.Fatalf("accepted bad key %q", kid)
			}
		}
	})
}

// longN is a 2048-bit modulus-shaped value (base64url of 256 0xff bytes).
const longN = "_____________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________________w"
