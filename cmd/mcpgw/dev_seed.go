package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"mcpgw/api"
	"mcpgw/config"
	"mcpgw/domain"
	"mcpgw/store"
)

// devSeed is `mcpgw dev`'s demo world (issue 7 item 5): a demo user (a
// static login and a system admin), an org it owns, and — with --upstream
// — an org config pointing at that MCP server, assigned to the demo user.
// Once the servers are up it prints the login, an API token, the connect
// URL and a ready connect token, so a local MCP client can connect at once.
type devSeed struct {
	upstream string
	email    string
	password string
	// generated reports that password was made here (and so is printed).
	generated bool
}

func addDevSeedFlags(fs *flag.FlagSet) *devSeed {
	d := &devSeed{}
	fs.StringVar(&d.upstream, "upstream", "", "dev: seed a config pointing at this MCP server URL (its host is added to the dev allowlist)")
	fs.StringVar(&d.email, "demo-email", "demo@example.com", "dev: the demo user's email")
	return d
}

// prepare runs before Validate: it allowlists the upstream's host (dev
// upstreams are usually on loopback) and adds the demo login.
func (d *devSeed) prepare(cfg *config.Config) error {
	d.email = strings.ToLower(strings.TrimSpace(d.email))
	if d.email == "" || !strings.Contains(d.email, "@") {
		return errors.New("--demo-email must be an email address")
	}
	if d.upstream != "" {
		u, err := url.Parse(d.upstream)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return errors.New("--upstream must be an http(s) URL without userinfo, query or fragment")
		}
		host := strings.ToLower(u.Hostname())
		if ip, err := netip.ParseAddr(host); err == nil {
			cfg.DevAllowlist.CIDRs = append(cfg.DevAllowlist.CIDRs, ip.String())
		} else {
			cfg.DevAllowlist.Hosts = append(cfg.DevAllowlist.Hosts, host)
		}
	}
	for _, su := range cfg.StaticUsers {
		if strings.EqualFold(su.Email, d.email) {
			return nil // the operator configured its password
		}
	}
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	d.password = base64.RawURLEncoding.EncodeToString(b)
	d.generated = true
	h, err := bcrypt.GenerateFromPassword([]byte(d.password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	cfg.StaticUsers = append(cfg.StaticUsers, config.StaticUser{Email: d.email, PasswordHash: string(h)})
	return nil
}

// run seeds the store (idempotently: a Postgres dev database keeps the
// demo world across restarts) and prints what to use.
func (d *devSeed) run(ctx context.Context, a *app, cfg *config.Config, st store.Store) error {
	now := time.Now().UTC()
	u, err := st.GetUserByEmail(ctx, d.email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		u, err = st.CreateUser(ctx, store.User{ID: store.NewID(), Email: d.email, DisplayName: "Demo", Status: store.UserActive,
			SystemAdmin: true, CreatedAt: now, UpdatedAt: now})
		if err != nil {
			return fmt.Errorf("dev seed: user: %w", err)
		}
	case err != nil:
		return fmt.Errorf("dev seed: user: %w", err)
	case !u.SystemAdmin:
		if u, err = st.SetSystemAdmin(ctx, u.ID, true, nil); err != nil {
			return fmt.Errorf("dev seed: user: %w", err)
		}
	}
	tok, err := api.IssueAPIToken(ctx, st, u.ID, "dev", 0, now)
	if err != nil {
		return fmt.Errorf("dev seed: token: %w", err)
	}
	org, err := d.org(ctx, st, u, now)
	if err != nil {
		return err
	}
	out := &bytes.Buffer{}
	base := strings.TrimRight(cfg.PublicBaseURL, "/")
	fmt.Fprintf(out, "dev: demo user     %s (system admin), org %q (%s)\n", u.Email, org.Name, org.ID)
	if d.generated {
		fmt.Fprintf(out, "dev: login         %s/login  email %s  password %s\n", base, u.Email, d.password)
	} else {
		fmt.Fprintf(out, "dev: login         %s/login  email %s  (password as configured)\n", base, u.Email)
	}
	fmt.Fprintf(out, "dev: api token     MCPGW_TOKEN=%s  (mcpgw admin --server http://%s ...)\n", tok.Token, dialable(cfg.Listen.HTTP))
	if d.upstream != "" {
		cfgID, connectURL, err := d.config(ctx, st, u, org, base, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "dev: config        %s -> %s\n", cfgID, d.upstream)
		fmt.Fprintf(out, "dev: connect url   %s\n", connectURL)
		if cfg.Runs(config.ComponentOAuth) && cfg.Listen.HTTP != "" {
			ct, err := connectToken(ctx, "http://"+dialable(cfg.Listen.HTTP), tok.Token, cfgID)
			if err != nil {
				fmt.Fprintf(out, "dev: connect token unavailable: %v\n", err)
			} else {
				fmt.Fprintf(out, "dev: connect token %s  (Authorization: Bearer ...; 15 minutes; `mcpgw admin connect-token %s` for a new one)\n", ct, cfgID)
			}
		}
	} else {
		fmt.Fprintln(out, "dev: no --upstream given: no demo config seeded")
	}
	_, err = a.stdout.Write(out.Bytes())
	return err
}

func (d *devSeed) org(ctx context.Context, st store.Store, u store.User, now time.Time) (store.Org, error) {
	orgs, err := st.ListOrgs(ctx)
	if err != nil {
		return store.Org{}, fmt.Errorf("dev seed: org: %w", err)
	}
	for _, o := range orgs {
		if o.Name == "demo" {
			if _, err := st.GetMember(ctx, o.ID, u.ID); errors.Is(err, store.ErrNotFound) {
				if _, err := st.AddMember(ctx, store.Member{OrgID: o.ID, UserID: u.ID, Role: store.RoleOwner, CreatedAt: now}, nil); err != nil {
					return store.Org{}, fmt.Errorf("dev seed: org: %w", err)
				}
			}
			return o, nil
		}
	}
	o, err := st.CreateOrg(ctx, store.Org{ID: store.NewID(), Name: "demo", CreatedAt: now}, u.ID,
		&store.AuditEvent{Type: "org.create", Outcome: "success", ActorUserID: u.ID, Metadata: map[string]string{"via": "dev"}})
	if err != nil {
		return store.Org{}, fmt.Errorf("dev seed: org: %w", err)
	}
	return o, nil
}

// config finds or creates the demo org config for the upstream and makes
// sure the demo user is assigned to it.
func (d *devSeed) config(ctx context.Context, st store.Store, u store.User, org store.Org, base string, now time.Time) (string, string, error) {
	cfgs, err := st.ListConfigs(ctx, store.ScopeOrg, org.ID)
	if err != nil {
		return "", "", fmt.Errorf("dev seed: config: %w", err)
	}
	var c store.Config
	for _, x := range cfgs {
		if x.Name == "demo" && x.RemoteURL == d.upstream {
			c = x
		}
	}
	ev := func(typ string) *store.AuditEvent {
		return &store.AuditEvent{Type: typ, Outcome: "success", ActorUserID: u.ID, OwnerScope: store.ScopeOrg, OwnerID: org.ID,
			Metadata: map[string]string{"via": "dev"}}
	}
	if c.ID == "" {
		c = store.Config{ID: store.NewID(), OwnerScope: store.ScopeOrg, OwnerID: org.ID, Name: "demo", RemoteURL: d.upstream,
			AuthMode: store.AuthNone, SharingMode: store.MultiUser, Status: store.ConfigEnabled, CreatedBy: u.ID, CreatedAt: now, UpdatedAt: now}
		e := ev("config.create")
		e.ConfigID = c.ID
		if c, _, err = st.CreateConfig(ctx, c, store.NewID(), domain.NewRouteKey(), e); err != nil {
			return "", "", fmt.Errorf("dev seed: config: %w", err)
		}
	}
	e := ev("assignment.create")
	e.ConfigID, e.UserID = c.ID, u.ID
	if _, err := st.Assign(ctx, store.Assignment{ConfigID: c.ID, UserID: u.ID, CreatedBy: u.ID, CreatedAt: now}, e); err != nil {
		return "", "", fmt.Errorf("dev seed: assignment: %w", err)
	}
	rt, err := st.GetActiveRoute(ctx, c.ID)
	if err != nil {
		return "", "", fmt.Errorf("dev seed: route: %w", err)
	}
	return c.ID, domain.RouteRef{Scope: rt.OwnerScope, OwnerID: rt.OwnerID, ConfigID: rt.ConfigID, Key: rt.Key}.URL(base), nil
}

// connectToken asks our own API for a derived connect token, exactly as
// `mcpgw admin connect-token` would.
func connectToken(ctx context.Context, server, apiToken, configID string) (string, error) {
	body, _ := json.Marshal(map[string]string{"config_id": configID})
	req, err := http.NewRequestWithContext(ctx, "POST", server+"/api/v1/connect-tokens", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("HTTP %d", res.StatusCode)
	}
	if res.StatusCode != http.StatusOK || out.AccessToken == "" {
		return "", fmt.Errorf("HTTP %d %s", res.StatusCode, out.Error)
	}
	return out.AccessToken, nil
}

// dialable turns a bound listen address into one a local client can dial
// (0.0.0.0 / [::] become loopback).
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
