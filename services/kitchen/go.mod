module github.com/pizzashop/pizzashop/services/kitchen

go 1.26
