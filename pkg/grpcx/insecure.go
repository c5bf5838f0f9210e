package grpcx

import (
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// insecureCreds is plaintext: services talk over loopback or a private
// network where TLS is terminated by the platform (a service mesh).
func insecureCreds() credentials.TransportCredentials { return insecure.NewCredentials() }
