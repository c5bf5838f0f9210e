module github.com/pizzashop/pizzashop/cmd/loadgen

go 1.26.0

require github.com/pizzashop/pizzashop/pkg v0.0.0

require (
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261005182115-fad411399dd8 // indirect
	google.golang.org/grpc v1.85.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/pizzashop/pizzashop/pkg => ../../pkg
	github.com/pizzashop/pizzashop/proto => ../../proto
)
