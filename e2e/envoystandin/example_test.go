package envoystandin_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"mcpgw/e2e/envoystandin"
)

// An e2e harness starts the stand-in from mcpgw's own bootstrap file,
// pointing its static clusters at the processes it started, and waits until
// the routes it needs are served before sending traffic.
func Example() {
	data, err := os.ReadFile("envoy/bootstrap-ads.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	opts, err := envoystandin.OptionsFromBootstrap(data, map[string]string{
		"mcpgw_xds":      "127.0.0.1:18000", // mcpgw serve --components=xds
		"mcpgw_extauthz": "127.0.0.1:9191",  // mcpgw serve --components=authz
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	opts.ListenAddr = "127.0.0.1:0"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	si, err := envoystandin.Start(ctx, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer si.Close()
	if err := si.WaitForRoutes(ctx, "/health", "/.well-known/oauth-protected-resource"); err != nil {
		fmt.Println(err, si.Status().NACKs)
		return
	}
	resp, err := http.Get(si.URL() + "/health")
	if err == nil {
		resp.Body.Close()
	}
}
