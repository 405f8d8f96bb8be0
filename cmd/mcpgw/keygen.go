package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"mcpgw/config"
	"mcpgw/domain/secrets"
	"mcpgw/domain/signing"
)

// runKeygen writes a new RSA signing key (plain PKCS#8 PEM, which OpenSSL
// reads; its kid is the RFC 7638 thumbprint of the public key, signing.KeyID)
// and a new AES-256 encryption key ("id:base64", the key ring entry
// format), then prints the environment lines that use them (DESIGN §9).
// When the environment already names a signing key and a key ring, the
// printed lines rotate: the old signing key becomes a previous key and the
// new encryption key is put in front of the old ring. Existing files are
// never overwritten without --force.
func runKeygen(ctx context.Context, a *app, args []string) error {
	fset := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fset.SetOutput(a.stderr)
	dir := fset.String("dir", ".", "directory for the key files")
	signName := fset.String("signing-key-out", "signing-key.pem", "signing key file name (in --dir)")
	encName := fset.String("encryption-key-out", "encryption-key", "encryption key file name (in --dir)")
	bits := fset.Int("bits", 2048, "RSA key size (2048-8192)")
	force := fset.Bool("force", false, "overwrite existing files")
	fset.Usage = func() {
		fmt.Fprintln(a.stderr, "usage: mcpgw keygen [--dir DIR] [--force]")
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	if fset.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", fset.Args()))
	}
	signPath, err := filepath.Abs(filepath.Join(*dir, *signName))
	if err != nil {
		return err
	}
	encPath, err := filepath.Abs(filepath.Join(*dir, *encName))
	if err != nil {
		return err
	}
	if signPath == encPath {
		return usageErr(errors.New("--signing-key-out and --encryption-key-out name the same file"))
	}
	if !*force {
		for _, p := range []string{signPath, encPath} {
			if _, err := os.Lstat(p); err == nil {
				return usageErr(fmt.Errorf("%s exists; refusing to overwrite without --force", p))
			} else if !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}

	sk, err := signing.Generate(*bits)
	if err != nil {
		return usageErr(err)
	}
	ek, err := secrets.NewKey("k" + time.Now().UTC().Format("20060102") + "-" + secrets.NewToken("")[:6])
	if err != nil {
		return err
	}
	if err := writeSecretFile(signPath, signing.EncodePEM(sk), *force); err != nil {
		return err
	}
	if err := writeSecretFile(encPath, []byte(secrets.EncodeKey(ek)+"\n"), *force); err != nil {
		return err
	}

	env := envMap(a.environ)
	ring := secrets.EncodeKey(ek)
	if old := strings.TrimSpace(env[config.EnvPrefix+"ENCRYPTION_KEYS"]); old != "" {
		ring += "," + old
	}
	var prev []string
	if cur := env[config.EnvPrefix+"SIGNING_KEY_FILE"]; cur != "" {
		if abs, _ := filepath.Abs(cur); abs == signPath {
			fmt.Fprintf(a.stderr, "warning: %s was the current signing key and has been replaced; tokens it signed can no longer be verified\n", signPath)
		} else {
			prev = append(prev, cur)
		}
	}
	for _, p := range strings.Split(env[config.EnvPrefix+"PREVIOUS_SIGNING_KEY_FILES"], ",") {
		if p = strings.TrimSpace(p); p != "" && len(prev) < 4 {
			prev = append(prev, p)
		}
	}

	fmt.Fprintf(a.stderr, "wrote signing key %s (kid %s) and encryption key %s (id %s)\n", signPath, sk.ID, encPath, ek.ID)
	fmt.Fprintln(a.stderr, "the MCPGW_ENCRYPTION_KEYS line below is a secret: store it like a password")
	fmt.Fprintf(a.stdout, "MCPGW_SIGNING_KEY_FILE=%s\n", signPath)
	if len(prev) > 0 {
		fmt.Fprintf(a.stdout, "MCPGW_PREVIOUS_SIGNING_KEY_FILES=%s\n", strings.Join(prev, ","))
	}
	fmt.Fprintf(a.stdout, "MCPGW_ENCRYPTION_KEYS=%s\n", ring)
	// The same as YAML, commented so the output stays a valid env file.
	fmt.Fprintln(a.stdout, "# or in the YAML configuration file (readable only by mcpgw):")
	fmt.Fprintln(a.stdout, "# keys:")
	fmt.Fprintf(a.stdout, "#   signing_key_file: %q\n", signPath)
	if len(prev) > 0 {
		q := make([]string, len(prev))
		for i, p := range prev {
			q[i] = fmt.Sprintf("%q", p)
		}
		fmt.Fprintf(a.stdout, "#   previous_signing_key_files: [%s]\n", strings.Join(q, ", "))
	}
	fmt.Fprintf(a.stdout, "#   encryption_keys: %q\n", ring)
	return nil
}

// writeSecretFile writes b with mode 0600. Without force it creates the
// file exclusively (O_EXCL), so a file appearing since the existence check
// is not clobbered; with force it writes a temporary file and renames it
// over the target, so a crash never leaves a half-written key.
func writeSecretFile(path string, b []byte, force bool) error {
	if !force {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".mcpgw-key-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func envMap(environ []string) map[string]string {
	m := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}
