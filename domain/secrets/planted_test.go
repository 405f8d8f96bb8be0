package secrets

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestPlantedSecretNeverLogged (DESIGN §9): a known secret and the key
// material go through every code path — seal, open, failed opens, bad key
// specs — while slog output is captured; neither the plaintext nor the key
// (raw or base64) may appear in any log line or error string, and printing
// a Key shows only its id.
func TestPlantedSecretNeverLogged(t *testing.T) {
	const planted = "PLANTED-SECRET-c0ffee-7f3a9b"
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	key, err := NewKey("k1")
	if err != nil {
		t.Fatal(err)
	}
	spec := EncodeKey(key)
	keyB64 := strings.TrimPrefix(spec, "k1:")
	forbidden := []string{planted, keyB64, string(key.Bytes), fmt.Sprintf("%x", key.Bytes)}

	var errs []error
	r, err := ParseKeyRing(spec)
	if err != nil {
		t.Fatal(err)
	}
	aad := AAD("configs", "static_headers", "cfg-1")
	ct, err := r.Seal([]byte(planted), aad)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte(planted)) {
		t.Fatal("ciphertext contains the plaintext")
	}
	if _, err := r.Open(ct, aad); err != nil {
		t.Fatal(err)
	}
	_, err = r.Open(ct, AAD("configs", "static_headers", "cfg-2"))
	errs = append(errs, err)
	_, err = ParseKeyRing("k1:" + keyB64[:20])
	errs = append(errs, err)
	_, err = ParseKeyRing("k1:" + keyB64 + ",k1:" + keyB64)
	errs = append(errs, err)
	_, err = ParseKeyRing(planted)
	errs = append(errs, err)
	_, err = NewKeyRing(Key{ID: "k1", Bytes: []byte(planted)})
	errs = append(errs, err)
	slog.Info("key ring in use", "key", key, "ring", r, "errors", errs)
	slog.Debug("key printed", "v", fmt.Sprintf("%v %+v %#v %s", key, key, key, key))

	for _, e := range errs {
		if e == nil {
			t.Fatal("expected an error")
		}
		for _, f := range forbidden {
			if strings.Contains(e.Error(), f) {
				t.Fatalf("error %q contains secret material", e)
			}
		}
	}
	out := logs.String()
	if !strings.Contains(out, "key ring in use") {
		t.Fatal("log capture did not work")
	}
	for _, f := range forbidden {
		if strings.Contains(out, f) {
			t.Fatalf("logs contain secret material:\n%s", out)
		}
	}
}
