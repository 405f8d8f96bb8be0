package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"mcpgw/config"
	"mcpgw/domain/secrets"
	"mcpgw/store"
	"mcpgw/store/postgres"
)

// runReencrypt: `mcpgw reencrypt [--dry-run]` rewrites every stored
// ciphertext that was not sealed by the newest key of the ring (DESIGN §9
// "re-encryption command"). Run it after putting a new key in front of
// MCPGW_ENCRYPTION_KEYS and rolling that ring out to every replica; when it
// reports nothing left and nothing undecryptable, and pending provider
// authorizations (≤ 30 min) have expired, the old key can leave the ring.
//
// Each rewrite is a compare-and-swap on the old ciphertext, so a
// concurrent writer (a token refresh, a header rotation) always wins and
// nothing is lost; the job can run while the servers serve and can be
// re-run at any time. A value no key in the ring opens is reported by
// column and row id and left untouched, and the command exits non-zero.
func runReencrypt(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("reencrypt", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	dryRun := fs.Bool("dry-run", false, "count what would be rewritten, change nothing")
	batch := fs.Int("batch", 500, "rows per page (1-1000)")
	fs.Usage = func() {
		fmt.Fprintln(a.stderr, "usage: mcpgw reencrypt [--dry-run] [--database-url URL] (MCPGW_ENCRYPTION_KEYS from env or --config file)")
		fs.PrintDefaults()
	}
	cfg, err := config.Load(fs, args, a.environ)
	if err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	if cfg.DatabaseURL == "" {
		return usageErr(errors.New("database_url is required (MCPGW_DATABASE_URL or --database-url)"))
	}
	if *batch < 1 || *batch > store.MaxCiphertextPage {
		return usageErr(fmt.Errorf("--batch must be 1-%d", store.MaxCiphertextPage))
	}
	ring, err := secrets.ParseKeyRing(cfg.Keys.EncryptionKeys)
	if err != nil {
		return usageErr(fmt.Errorf("keys.encryption_keys (MCPGW_ENCRYPTION_KEYS): %w", err))
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: cfg.SlogLevel()}))

	st, err := postgres.Open(ctx, cfg.DatabaseURL, postgres.WithLogger(log))
	if err != nil {
		return fmt.Errorf("open database: %w", err)
	}
	defer st.Close()
	res, err := reencryptAll(ctx, st, ring, *batch, *dryRun, log)
	verb := "rewritten"
	if *dryRun {
		verb = "to rewrite"
	}
	for _, r := range res {
		fmt.Fprintf(a.stdout, "%-36s %d %s, %d current, %d changed concurrently, %d undecryptable\n",
			r.col, r.rewritten, verb, r.current, r.raced, r.failed)
	}
	if err != nil {
		return err
	}
	failed := 0
	for _, r := range res {
		failed += r.failed
	}
	if failed > 0 {
		return fmt.Errorf("%d values could not be decrypted with any key in the ring (see the log for their rows); keep every old key until they are dealt with", failed)
	}
	fmt.Fprintf(a.stdout, "all encrypted values are sealed with key %q\n", ring.PrimaryID())
	return nil
}

type reencryptResult struct {
	col                               store.EncryptedColumn
	rewritten, current, raced, failed int
}

// reencryptAll walks every encrypted column. It logs row ids and columns,
// never values.
func reencryptAll(ctx context.Context, rs store.ReencryptStore, ring *secrets.KeyRing, batch int, dryRun bool, log *slog.Logger) ([]reencryptResult, error) {
	var out []reencryptResult
	for _, col := range store.EncryptedColumns {
		res := reencryptResult{col: col}
		after := ""
		for {
			rows, err := rs.ListCiphertexts(ctx, col, after, batch)
			if err != nil {
				return append(out, res), fmt.Errorf("list %s: %w", col, err)
			}
			for _, row := range rows {
				if !ring.NeedsReencrypt(row.Value) {
					res.current++
					continue
				}
				next, err := ring.Reencrypt(row.Value, secrets.AAD(col.Table(), col.Column(), row.RowID))
				if err != nil {
					res.failed++
					keyID, _ := secrets.KeyID(row.Value)
					log.Error("cannot decrypt", "column", string(col), "row_id", row.RowID, "key_id", keyID)
					continue
				}
				if dryRun {
					res.rewritten++
					continue
				}
				switch err := rs.ReplaceCiphertext(ctx, col, row.RowID, row.Value, next); {
				case err == nil:
					res.rewritten++
				case errors.Is(err, store.ErrStale), errors.Is(err, store.ErrNotFound):
					// Written or removed meanwhile by the servers, which seal
					// with the newest key: nothing to do.
					res.raced++
				default:
					return append(out, res), fmt.Errorf("rewrite %s row %s: %w", col, row.RowID, err)
				}
			}
			if len(rows) < batch {
				break
			}
			after = rows[len(rows)-1].RowID
		}
		log.Info("column done", "column", string(col), "rewritten", res.rewritten, "current", res.current, "raced", res.raced, "failed", res.failed)
		out = append(out, res)
	}
	return out, nil
}
