package menu

import "time"

// Seed is the menu a fresh store starts with.
func Seed(now time.Time) (pizzas, toppings []Item) {
	p := func(id, name, desc string, s, m, l int64) Item {
		return Item{ID: id, Name: name, Description: desc, Prices: Prices{s, m, l}, Available: true, UpdateTime: now.UTC(), Revision: 1}
	}
	pizzas = []Item{
		p("margherita", "Margherita", "San Marzano tomato, fior di latte, basil, olive oil", 900, 1200, 1500),
		p("marinara", "Marinara", "Tomato, garlic, oregano, olive oil; no cheese", 800, 1050, 1300),
		p("pepperoni", "Pepperoni", "Tomato, mozzarella, spicy pepperoni", 1050, 1400, 1750),
		p("quattro-formaggi", "Quattro Formaggi", "Mozzarella, gorgonzola, fontina, parmigiano; white base", 1150, 1500, 1850),
		p("diavola", "Diavola", "Tomato, mozzarella, hot salami, chili oil", 1100, 1450, 1800),
		p("capricciosa", "Capricciosa", "Tomato, mozzarella, ham, mushrooms, artichokes, olives", 1150, 1550, 1900),
		p("veggie-garden", "Veggie Garden", "Tomato, mozzarella, peppers, zucchini, red onion, cherry tomatoes", 1050, 1400, 1750),
		p("funghi", "Funghi", "Tomato, mozzarella, roasted mushrooms, thyme", 1000, 1300, 1650),
	}
	t := func(id, name string, s, m, l int64) Item {
		return Item{ID: id, Name: name, Prices: Prices{s, m, l}, Available: true, UpdateTime: now.UTC(), Revision: 1}
	}
	toppings = []Item{
		t("extra-mozzarella", "Extra mozzarella", 150, 200, 250),
		t("mushrooms", "Mushrooms", 100, 150, 200),
		t("olives", "Black olives", 100, 150, 200),
		t("red-onion", "Red onion", 75, 100, 125),
		t("peppers", "Bell peppers", 100, 150, 200),
		t("jalapenos", "Jalapeños", 100, 125, 150),
		t("ham", "Ham", 175, 225, 275),
		t("pepperoni", "Pepperoni", 175, 225, 275),
		t("anchovies", "Anchovies", 150, 200, 250),
		t("basil", "Fresh basil", 50, 75, 100),
		t("rocket", "Rocket", 75, 100, 125),
		t("burrata", "Burrata", 300, 400, 500),
	}
	return pizzas, toppings
}
