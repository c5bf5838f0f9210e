module github.com/pizzashop/pizzashop/cmd/pizzashop

go 1.26
