package main

// defaultNATSURL is where the commands that talk to a running shop
// (deadletters, events) find NATS when no --nats flag is given: NATS_URL,
// else the embedded server of `make run` at PIZZASHOP_NATS_ADDR, the same
// variable that moves it, else its default address. A shop started with
// moved ports is thus reached from the same environment. It carries no
// password (it is shown as the flag's default): natsURL adds the local
// shop's.
func defaultNATSURL() string {
	if u := envOr("NATS_URL", ""); u != "" {
		return u
	}
	return "nats://" + dialAddr(envOr("PIZZASHOP_NATS_ADDR", defaultNATSAddr))
}

// natsFlagUsage describes the --nats flag of those commands.
const natsFlagUsage = "NATS server (default: NATS_URL, else nats://PIZZASHOP_NATS_ADDR as make run uses it, else " + defaultNATSAddr + ")"

// natsURL is the URL those commands connect to: the --nats flag's value
// with the local shop's credentials when it names a loopback server without
// any (see withLocalCredentials).
func natsURL(flagValue string) string { return withLocalCredentials(flagValue) }
