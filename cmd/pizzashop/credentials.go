package main

import (
	"net"
	"net/url"
	"strings"

	"github.com/pizzashop/pizzashop/pkg/devstack"
)

// The embedded NATS and store require the credentials generated in the data
// directory at their first start (devstack.CredentialsFile). The launcher
// hands them to every process in NATS_URL and MONGO_URI; the commands that
// talk to a running shop find them in PIZZASHOP_DATA (else ./data), as they
// find its moved ports in PIZZASHOP_*_ADDR.

// localDataDir is the data directory of the shop the commands talk to.
func localDataDir() string { return envOr("PIZZASHOP_DATA", defaultData) }

// withLocalCredentials adds the local shop's NATS user and password to each
// of the comma-separated URLs that has none and names a loopback host: the
// shop's own NATS, never a server elsewhere. Without a credentials file the
// URLs are returned as they are.
func withLocalCredentials(urls string) string {
	var creds *devstack.Credentials
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User != nil || u.Host == "" || !isLoopback(u.Hostname()) {
			continue
		}
		if creds == nil {
			c, err := devstack.LoadCredentials(localDataDir())
			if err != nil {
				return urls
			}
			creds = &c
		}
		u.User = url.UserPassword(creds.NATSUser, creds.NATSPassword)
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
