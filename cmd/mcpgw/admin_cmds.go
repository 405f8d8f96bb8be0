package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"time"
)

// adminCmds is the CLI surface: one entry per API operation (README "CLI
// walkthrough" and TestAdminCLICoversAPI keep it in step with the API).
func adminCmds() []adminCmd {
	userCols := []string{"id", "email", "status", "system_admin", "display_name"}
	cfgCols := []string{"id", "name", "owner_scope", "owner_id", "auth_mode", "sharing_mode", "status", "version", "connect_url"}
	return []adminCmd{
		{words: "me", summary: "who the token belongs to", flags: noArgs("GET", "/api/v1/me")},

		{words: "users create", summary: "create a user (system admins)", flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			email := fs.String("email", "", "email (required)")
			name := fs.String("display-name", "", "display name")
			status := fs.String("status", "", "active (default), blocked or provisional")
			admin := fs.Bool("system-admin", false, "make a system admin")
			return func(pos []string) (adminReq, error) {
				if err := need(pos); err != nil {
					return adminReq{}, err
				}
				return adminReq{method: "POST", path: "/api/v1/users", body: map[string]any{"email": *email, "display_name": *name, "status": *status, "system_admin": *admin}}, nil
			}
		}},
		{words: "users list", summary: "list users (system admins)", columns: userCols, flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			del := fs.Bool("include-deleted", false, "include deleted users")
			return func(pos []string) (adminReq, error) {
				if err := need(pos); err != nil {
					return adminReq{}, err
				}
				q := url.Values{}
				if *del {
					q.Set("include_deleted", "true")
				}
				return adminReq{method: "GET", path: "/api/v1/users", query: q}, nil
			}
		}},
		{words: "users get", args: "USER_ID", summary: "show a user", flags: oneID("GET", "/api/v1/users/%s", "USER_ID")},
		{words: "users block", args: "USER_ID", summary: "block a user (takes effect at the next request)", flags: oneID("POST", "/api/v1/users/%s/block", "USER_ID")},
		{words: "users unblock", args: "USER_ID", summary: "unblock a user", flags: oneID("POST", "/api/v1/users/%s/unblock", "USER_ID")},
		{words: "users delete", args: "USER_ID", summary: "soft-delete and anonymize a user (cascade)", flags: oneID("DELETE", "/api/v1/users/%s", "USER_ID")},

		{words: "tokens create", summary: "mint a personal API token (printed once)", flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			name := fs.String("name", "", "token name (required)")
			exp := fs.Duration("expires-in", 0, "lifetime, e.g. 720h (0: never expires)")
			user := fs.String("user", "me", "user id (default: yourself)")
			return func(pos []string) (adminReq, error) {
				if err := need(pos); err != nil {
					return adminReq{}, err
				}
				return adminReq{method: "POST", path: "/api/v1/users/" + url.PathEscape(*user) + "/tokens",
					body: map[string]any{"name": *name, "expires_in_seconds": int64(*exp / time.Second)}}, nil
			}
		}},
		{words: "tokens list", args: "USER_ID", summary: "list a user's API tokens", columns: []string{"id", "name", "created_at", "expires_at", "revoked_at"},
			flags: oneID("GET", "/api/v1/users/%s/tokens", "USER_ID")},
		{words: "tokens revoke", args: "USER_ID TOKEN_ID", summary: "revoke an API token", flags: twoIDs("DELETE", "/api/v1/users/%s/tokens/%s", "USER_ID", "TOKEN_ID")},

		{words: "orgs create", summary: "create an org (you become its owner)", flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			name := fs.String("name", "", "org name (required)")
			owner := fs.String("owner", "", "owner user id (system admins; default: you)")
			return func(pos []string) (adminReq, error) {
				if err := need(pos); err != nil {
					return adminReq{}, err
				}
				return adminReq{method: "POST", path: "/api/v1/orgs", body: map[string]any{"name": *name, "owner_user_id": *owner}}, nil
			}
		}},
		{words: "orgs list", summary: "list your orgs (all, for system admins)", columns: []string{"id", "name", "role", "created_at"}, flags: noArgs("GET", "/api/v1/orgs")},
		{words: "orgs get", args: "ORG_ID", summary: "show an org", flags: oneID("GET", "/api/v1/orgs/%s", "ORG_ID")},
		{words: "members list", args: "ORG_ID", summary: "list an org's members", columns: []string{"user_id", "role", "created_at"}, flags: oneID("GET", "/api/v1/orgs/%s/members", "ORG_ID")},
		{words: "members add", args: "ORG_ID USER_ID", summary: "add a member", flags: memberFlags("POST", true)},
		{words: "members set-role", args: "ORG_ID USER_ID", summary: "change a member's role", flags: memberFlags("PATCH", false)},
		{words: "members remove", args: "ORG_ID USER_ID", summary: "remove a member (cascade)", flags: twoIDs("DELETE", "/api/v1/orgs/%s/members/%s", "ORG_ID", "USER_ID")},

		{words: "configs create", summary: "create a config", flags: configFlags(true)},
		{words: "configs list", summary: "list configs you manage", columns: cfgCols, flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			org := fs.String("org", "", "only this org's configs")
			user := fs.String("user", "", "only this user's personal configs")
			return func(pos []string) (adminReq, error) {
				if err := need(pos); err != nil {
					return adminReq{}, err
				}
				q := url.Values{}
				switch {
				case *org != "" && *user != "":
					return adminReq{}, errors.New("--org and --user exclude each other")
				case *org != "":
					q.Set("owner_scope", "org")
					q.Set("owner_id", *org)
				case *user != "":
					q.Set("owner_scope", "user")
					q.Set("owner_id", *user)
				}
				return adminReq{method: "GET", path: "/api/v1/configs", query: q}, nil
			}
		}},
		{words: "configs get", args: "CONFIG_ID", summary: "show a config", flags: oneID("GET", "/api/v1/configs/%s", "CONFIG_ID")},
		{words: "configs update", args: "CONFIG_ID", summary: "change a config (material changes revoke grants)", flags: configFlags(false)},
		{words: "configs enable", args: "CONFIG_ID", summary: "enable a config", flags: oneID("POST", "/api/v1/configs/%s/enable", "CONFIG_ID")},
		{words: "configs disable", args: "CONFIG_ID", summary: "disable a config (runtime denies at once)", flags: oneID("POST", "/api/v1/configs/%s/disable", "CONFIG_ID")},
		{words: "configs delete", args: "CONFIG_ID", summary: "delete a config (cascade)", flags: oneID("DELETE", "/api/v1/configs/%s", "CONFIG_ID")},
		{words: "configs rotate-route", args: "CONFIG_ID", summary: "replace the route key (old URL stops working)", flags: oneID("POST", "/api/v1/configs/%s/rotate-route", "CONFIG_ID")},

		{words: "assignments list", args: "CONFIG_ID", summary: "list a config's assignees", columns: []string{"user_id", "created_by", "created_at"}, flags: oneID("GET", "/api/v1/configs/%s/assignments", "CONFIG_ID")},
		{words: "assignments add", args: "CONFIG_ID USER_ID", summary: "assign a member (single_user replaces the previous one)", flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			return func(pos []string) (adminReq, error) {
				if err := need(pos, "CONFIG_ID", "USER_ID"); err != nil {
					return adminReq{}, err
				}
				return adminReq{method: "POST", path: "/api/v1/configs/" + url.PathEscape(pos[0]) + "/assignments", body: map[string]any{"user_id": pos[1]}}, nil
			}
		}},
		{words: "assignments remove", args: "CONFIG_ID USER_ID", summary: "unassign (removes the user's instance)", flags: twoIDs("DELETE", "/api/v1/configs/%s/assignments/%s", "CONFIG_ID", "USER_ID")},

		{words: "available", summary: "configs you can use now, with connect URLs", columns: []string{"config_id", "name", "execution_context", "needs_authorization", "connect_url"}, flags: noArgs("GET", "/api/v1/available")},
		{words: "connect-token", args: "CONFIG_ID", summary: "mint a connect token for one of your configs", flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
			return func(pos []string) (adminReq, error) {
				if err := need(pos, "CONFIG_ID"); err != nil {
					return adminReq{}, err
				}
				return adminReq{method: "POST", path: "/api/v1/connect-tokens", body: map[string]any{"config_id": pos[0]}}, nil
			}
		}},
		{words: "instances list", summary: "your instances (or an org's, with --org)", columns: []string{"id", "config_id", "user_id", "state", "grant_version", "updated_at"},
			flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
				org := fs.String("org", "", "list this org's instances (owners/admins)")
				all := fs.Bool("all", false, "include revoked and removed instances")
				return func(pos []string) (adminReq, error) {
					if err := need(pos); err != nil {
						return adminReq{}, err
					}
					q := url.Values{}
					if *all {
						q.Set("include_terminal", "true")
					}
					p := "/api/v1/instances"
					if *org != "" {
						p = "/api/v1/orgs/" + url.PathEscape(*org) + "/instances"
					}
					return adminReq{method: "GET", path: p, query: q}, nil
				}
			}},
		{words: "instances revoke", args: "INSTANCE_ID", summary: "revoke an instance and its grant", flags: oneID("DELETE", "/api/v1/instances/%s", "INSTANCE_ID")},

		{words: "audit", summary: "query audit events (admins; org owners/admins with --org)", columns: []string{"id", "time", "type", "outcome", "actor_user_id", "config_id", "user_id", "reason"},
			flags: func(fs *flag.FlagSet) func([]string) (adminReq, error) {
				f := map[string]*string{}
				for _, n := range []string{"org", "config", "user", "type", "since", "until", "before", "limit"} {
					f[n] = fs.String(n, "", "filter: "+n)
				}
				return func(pos []string) (adminReq, error) {
					if err := need(pos); err != nil {
						return adminReq{}, err
					}
					q := url.Values{}
					names := map[string]string{"org": "org_id", "config": "config_id", "user": "user_id"}
					for n, v := range f {
						if *v == "" {
							continue
						}
						k := n
						if m, ok := names[n]; ok {
							k = m
						}
						q.Set(k, *v)
					}
					return adminReq{method: "GET", path: "/api/v1/audit", query: q}, nil
				}
			}},
	}
}

func memberFlags(method string, add bool) func(fs *flag.FlagSet) func([]string) (adminReq, error) {
	return func(fs *flag.FlagSet) func([]string) (adminReq, error) {
		role := fs.String("role", "member", "owner, admin or member")
		return func(pos []string) (adminReq, error) {
			if err := need(pos, "ORG_ID", "USER_ID"); err != nil {
				return adminReq{}, err
			}
			if add {
				return adminReq{method: method, path: "/api/v1/orgs/" + url.PathEscape(pos[0]) + "/members", body: map[string]any{"user_id": pos[1], "role": *role}}, nil
			}
			return adminReq{method: method, path: "/api/v1/orgs/" + url.PathEscape(pos[0]) + "/members/" + url.PathEscape(pos[1]), body: map[string]any{"role": *role}}, nil
		}
	}
}

// configFlags builds configs create / update. Only flags that were set are
// sent, so update is a partial change. -f sends a JSON body as is (every
// field of the API, e.g. provider settings).
func configFlags(create bool) func(fs *flag.FlagSet) func([]string) (adminReq, error) {
	return func(fs *flag.FlagSet) func([]string) (adminReq, error) {
		file := fs.String("f", "", "JSON body file (the API's request shape); other flags are then ignored")
		name := fs.String("name", "", "name")
		remote := fs.String("remote-url", "", "remote MCP server URL (https)")
		mode := fs.String("auth-mode", "", "none, static_headers, oauth_dynamic or oauth_static")
		sharing := fs.String("sharing-mode", "", "single_user or multi_user (org configs)")
		passthrough := fs.Bool("path-passthrough", false, "forward sub-paths of the route")
		org := fs.String("org", "", "create an org config for this org id (default: personal)")
		owner := fs.String("owner-user", "", "personal config for this user (system admins)")
		disabled := fs.Bool("disabled", false, "create disabled")
		var static, aux multiFlag
		fs.Var(&static, "static-header", "secret static header \"Name: value\" (repeatable; prefer --static-headers-file)")
		staticFile := fs.String("static-headers-file", "", "file of secret \"Name: value\" lines")
		fs.Var(&aux, "aux-header", "non-secret auxiliary header \"Name: value\" (repeatable)")
		return func(pos []string) (adminReq, error) {
			var path, method string
			if create {
				if err := need(pos); err != nil {
					return adminReq{}, err
				}
				path, method = "/api/v1/configs", "POST"
			} else {
				if err := need(pos, "CONFIG_ID"); err != nil {
					return adminReq{}, err
				}
				path, method = "/api/v1/configs/"+url.PathEscape(pos[0]), "PATCH"
			}
			if *file != "" {
				b, err := bodyFile(*file)
				if err != nil {
					return adminReq{}, err
				}
				return adminReq{method: method, path: path, body: b}, nil
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			body := map[string]any{}
			put := func(flagName, key string, v any) {
				if set[flagName] {
					body[key] = v
				}
			}
			put("name", "name", *name)
			put("remote-url", "remote_url", *remote)
			put("auth-mode", "auth_mode", *mode)
			put("sharing-mode", "sharing_mode", *sharing)
			put("path-passthrough", "path_passthrough", *passthrough)
			if *staticFile != "" {
				lines, err := headerFile(*staticFile)
				if err != nil {
					return adminReq{}, err
				}
				static = append(static, lines...)
			}
			if len(static) > 0 {
				h, err := headerMap("static-header", static)
				if err != nil {
					return adminReq{}, err
				}
				body["static_headers"] = h
			}
			if len(aux) > 0 {
				h, err := headerMap("aux-header", aux)
				if err != nil {
					return adminReq{}, err
				}
				body["aux_headers"] = h
			}
			if create {
				put("disabled", "disabled", *disabled)
				switch {
				case *org != "" && *owner != "":
					return adminReq{}, errors.New("--org and --owner-user exclude each other")
				case *org != "":
					body["owner_scope"], body["owner_id"] = "org", *org
				case *owner != "":
					body["owner_scope"], body["owner_id"] = "user", *owner
				}
			} else if set["org"] || set["owner-user"] || set["disabled"] {
				return adminReq{}, fmt.Errorf("the owner and status are not changed by update (use configs enable/disable)")
			}
			return adminReq{method: method, path: path, body: body}, nil
		}
	}
}
