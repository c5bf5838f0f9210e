module github.com/pizzashop/pizzashop/services/order

go 1.26
