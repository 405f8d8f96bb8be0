package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// `mcpgw admin` is a thin client of the management API (DESIGN §7): every
// subcommand is one HTTP request to /api/v1, printed as a table (default)
// or as the API's JSON (-o json). It holds no logic the API does not: all
// authorization and validation happen on the server.
//
// The token comes from --token or MCPGW_TOKEN (prefer the environment: a
// flag shows in the process list); the server from --server or
// MCPGW_SERVER.

const defaultAdminServer = "http://127.0.0.1:8080"

// adminCmd is one subcommand: path words, usage, and how to build the
// request from its flags and positional arguments.
type adminCmd struct {
	words   string // e.g. "configs create"
	args    string // positional argument names, for usage
	summary string
	// flags defines the command's flags on fs and returns build, which
	// turns the parsed positional args into a request.
	flags func(fs *flag.FlagSet) func(pos []string) (adminReq, error)
	// columns for table output of list answers.
	columns []string
}

// adminReq is one API call.
type adminReq struct {
	method, path string
	query        url.Values
	body         any
}

type adminClient struct {
	server, token, output string
	http                  *http.Client
	stdout, stderr        io.Writer
}

func runAdmin(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	env := envMap(a.environ)
	server := fs.String("server", firstNonEmpty(env["MCPGW_SERVER"], defaultAdminServer), "management API base URL (env MCPGW_SERVER)")
	token := fs.String("token", "", "API token (default: env MCPGW_TOKEN; prefer the environment)")
	output := fs.String("o", "table", "output: table or json")
	fs.Usage = func() { adminUsage(a.stderr, fs) }
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		adminUsage(a.stderr, fs)
		return usageErr(errors.New("missing subcommand"))
	}
	if *output != "table" && *output != "json" {
		return usageErr(fmt.Errorf("-o must be table or json"))
	}
	tok := *token
	if tok == "" {
		tok = env["MCPGW_TOKEN"]
	}
	cmd, n := findAdminCmd(rest)
	if cmd == nil {
		adminUsage(a.stderr, fs)
		return usageErr(fmt.Errorf("unknown subcommand %q", strings.Join(rest, " ")))
	}
	sub := flag.NewFlagSet("admin "+cmd.words, flag.ContinueOnError)
	sub.SetOutput(a.stderr)
	build := cmd.flags(sub)
	// Output and connection flags are accepted after the subcommand too.
	sub.StringVar(output, "o", *output, "output: table or json")
	sub.Usage = func() {
		fmt.Fprintf(a.stderr, "usage: mcpgw admin %s %s [flags]\n  %s\n", cmd.words, cmd.args, cmd.summary)
		sub.PrintDefaults()
	}
	pos, err := parseInterleaved(sub, rest[n:])
	if err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return usageErr(err)
	}
	req, err := build(pos)
	if err != nil {
		return usageErr(err)
	}
	if tok == "" {
		return usageErr(errors.New("no API token: set MCPGW_TOKEN (or --token); `mcpgw bootstrap` prints the first one"))
	}
	c := &adminClient{server: strings.TrimRight(*server, "/"), token: tok, output: *output,
		http: &http.Client{Timeout: 30 * time.Second}, stdout: a.stdout, stderr: a.stderr}
	return c.do(ctx, req, cmd.columns)
}

// parseInterleaved parses flags that may appear before, between or after
// positional arguments ("configs get ID -o json").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func findAdminCmd(rest []string) (*adminCmd, int) {
	cmds := adminCmds()
	for n := min(2, len(rest)); n >= 1; n-- {
		words := strings.Join(rest[:n], " ")
		for i := range cmds {
			if cmds[i].words == words {
				return &cmds[i], n
			}
		}
	}
	return nil, 0
}

func adminUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintln(w, "usage: mcpgw admin [--server URL] [--token TOKEN] [-o table|json] <subcommand> [args] [flags]")
	fmt.Fprintln(w, "\nThe token defaults to $MCPGW_TOKEN, the server to $MCPGW_SERVER or "+defaultAdminServer+".")
	fmt.Fprintln(w, "\nsubcommands:")
	for _, c := range adminCmds() {
		fmt.Fprintf(w, "  %-28s %s\n", c.words+" "+c.args, c.summary)
	}
	fmt.Fprintln(w, "\nglobal flags:")
	fs.PrintDefaults()
}

func (c *adminClient) do(ctx context.Context, r adminReq, columns []string) error {
	u := c.server + r.path
	if len(r.query) > 0 {
		u += "?" + r.query.Encode()
	}
	var body io.Reader
	if r.body != nil {
		switch b := r.body.(type) {
		case json.RawMessage:
			body = bytes.NewReader(b)
		default:
			j, err := json.Marshal(b)
			if err != nil {
				return err
			}
			body = bytes.NewReader(j)
		}
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u, body)
	if err != nil {
		return fmt.Errorf("bad server URL: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("request failed: %w", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if res.StatusCode >= 400 {
		var e struct {
			Error json.RawMessage `json:"error"`
		}
		var detail struct{ Code, Message, Description string }
		if json.Unmarshal(b, &e) == nil && len(e.Error) > 0 {
			if json.Unmarshal(e.Error, &detail) != nil {
				// OAuth-style error: "error" is a string.
				var code string
				_ = json.Unmarshal(e.Error, &code)
				var o struct {
					D string `json:"error_description"`
				}
				_ = json.Unmarshal(b, &o)
				detail.Code, detail.Message = code, o.D
			}
			return fmt.Errorf("%d %s: %s", res.StatusCode, detail.Code, detail.Message)
		}
		return fmt.Errorf("HTTP %d from the server", res.StatusCode)
	}
	if res.StatusCode == http.StatusNoContent || len(bytes.TrimSpace(b)) == 0 {
		if c.output == "json" {
			fmt.Fprintln(c.stdout, "{}")
		} else {
			fmt.Fprintln(c.stdout, "ok")
		}
		return nil
	}
	if c.output == "json" {
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			out.Reset()
			out.Write(b)
		}
		fmt.Fprintln(c.stdout, strings.TrimRight(out.String(), "\n"))
		return nil
	}
	return printTable(c.stdout, b, columns)
}

// printTable renders a list answer ({"things": [...]}) as columns, or a
// single object as KEY VALUE lines.
func printTable(w io.Writer, b []byte, columns []string) error {
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		_, err = w.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	if len(v) <= 2 {
		for k, x := range v {
			list, ok := x.([]any)
			if !ok {
				continue
			}
			cols := columns
			if len(cols) == 0 && len(list) > 0 {
				if m, ok := list[0].(map[string]any); ok {
					for k := range m {
						cols = append(cols, k)
					}
					sort.Strings(cols)
				}
			}
			fmt.Fprintln(tw, strings.ToUpper(strings.Join(cols, "\t")))
			for _, item := range list {
				m, _ := item.(map[string]any)
				var cells []string
				for _, c := range cols {
					cells = append(cells, cell(m[c]))
				}
				fmt.Fprintln(tw, strings.Join(cells, "\t"))
			}
			if n, ok := v["next_before"]; ok && k == "events" {
				fmt.Fprintf(tw, "\nmore: --before %s\n", cell(n))
			}
			return nil
		}
	}
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\n", k, cell(v[k]))
	}
	return nil
}

func cell(x any) string {
	switch t := x.(type) {
	case nil:
		return ""
	case string:
		return t
	case float64:
		return fmt.Sprintf("%.0f", t)
	case bool:
		return fmt.Sprint(t)
	default:
		b, _ := json.Marshal(t)
		return string(b)
	}
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// multiFlag collects a repeatable flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// headerMap parses "Name: value" pairs.
func headerMap(flagName string, pairs []string) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, ":")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--%s wants \"Name: value\"", flagName)
		}
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// headerFile reads "Name: value" lines from a file (so secret values stay
// out of the process list and shell history).
func headerFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

func need(pos []string, names ...string) error {
	if len(pos) != len(names) {
		return fmt.Errorf("want %d argument(s): %s", len(names), strings.Join(names, " "))
	}
	return nil
}

func noArgs(method, path string) func(*flag.FlagSet) func([]string) (adminReq, error) {
	return func(*flag.FlagSet) func([]string) (adminReq, error) {
		return func(pos []string) (adminReq, error) {
			if err := need(pos); err != nil {
				return adminReq{}, err
			}
			return adminReq{method: method, path: path}, nil
		}
	}
}

// oneID builds METHOD path-with-{id} from one positional argument.
func oneID(method, pattern, name string) func(*flag.FlagSet) func([]string) (adminReq, error) {
	return func(*flag.FlagSet) func([]string) (adminReq, error) {
		return func(pos []string) (adminReq, error) {
			if err := need(pos, name); err != nil {
				return adminReq{}, err
			}
			return adminReq{method: method, path: fmt.Sprintf(pattern, url.PathEscape(pos[0]))}, nil
		}
	}
}

func twoIDs(method, pattern, a, b string) func(*flag.FlagSet) func([]string) (adminReq, error) {
	return func(*flag.FlagSet) func([]string) (adminReq, error) {
		return func(pos []string) (adminReq, error) {
			if err := need(pos, a, b); err != nil {
				return adminReq{}, err
			}
			return adminReq{method: method, path: fmt.Sprintf(pattern, url.PathEscape(pos[0]), url.PathEscape(pos[1]))}, nil
		}
	}
}

// bodyFile reads a JSON body from a file ("-" is stdin is not supported:
// keep it explicit).
func bodyFile(path string) (json.RawMessage, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if !json.Valid(b) {
		return nil, fmt.Errorf("%s is not valid JSON", path)
	}
	return json.RawMessage(b), nil
}
