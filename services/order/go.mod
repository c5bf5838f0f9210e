module github.com/pizzashop/pizzashop/services/order

go 1.26

require (
	github.com/pizzashop/pizzashop/pkg v0.0.0
	github.com/pizzashop/pizzashop/proto v0.0.0
)

replace (
	github.com/pizzashop/pizzashop/pkg => ../../pkg
	github.com/pizzashop/pizzashop/proto => ../../proto
)
