module github.com/pizzashop/pizzashop/services/menu

go 1.26
