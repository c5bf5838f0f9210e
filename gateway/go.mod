module github.com/pizzashop/pizzashop/gateway

go 1.26
