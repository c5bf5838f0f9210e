module github.com/pizzashop/pizzashop/services/delivery

go 1.26
