//! Products, their EAN-13 codes and the receipt's order lines a basket becomes.

use super::*;

/// A product on the demo store's shelves.
#[derive(Debug, Clone, Copy)]
pub struct Product {
    pub name: &'static str,
    /// The first 12 digits of its EAN-13; [`ean13`] adds the check digit.
    pub ean_body: &'static str,
    /// Price in øre, VAT included.
    pub price: u64,
    pub vat_percent: u8,
}

/// The shelves. Every price is far above the test amounts that fail on purpose (151, 182, …).
pub const PRODUCTS: [Product; 8] = [
    product("Lettmelk 1 l", "703801000012", 2_190, 15),
    product("Grovbrod", "703801000029", 3_490, 15),
    product("Kaffe 250 g", "703801000036", 6_990, 15),
    product("Epler 1 kg", "703801000043", 2_990, 15),
    product("Laks 400 g", "703801000050", 12_900, 15),
    product("Oppvasktabletter", "703801000067", 8_990, 25),
    product("Batterier AA 4 stk", "703801000074", 5_990, 25),
    product("Blomster", "703801000081", 14_900, 25),
];

pub(super) const fn product(
    name: &'static str,
    ean_body: &'static str,
    price: u64,
    vat_percent: u8,
) -> Product {
    Product {
        name,
        ean_body,
        price,
        vat_percent,
    }
}

/// The EAN-13 of a 12-digit body: the body and its check digit. `None` if the body is not 12
/// digits.
pub fn ean13(body: &str) -> Option<String> {
    if body.len() != 12 || !body.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let sum: u32 = body
        .bytes()
        .enumerate()
        .map(|(i, b)| u32::from(b - b'0') * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    Some(format!("{body}{}", (10 - sum % 10) % 10))
}

/// A receipt line for `quantity` of `product`, VAT included in the total.
pub fn order_line(product: &Product, quantity: u32) -> OrderLine {
    let total = product.price * u64::from(quantity);
    let rate = u64::from(product.vat_percent);
    OrderLine {
        name: product.name.to_owned(),
        id: ean13(product.ean_body).unwrap_or_else(|| product.ean_body.to_owned()),
        quantity,
        unit_price: product.price,
        total,
        vat_percent: product.vat_percent,
        vat_amount: total * rate / (100 + rate),
    }
}

/// The payment for a basket of `(product index, quantity)`: amount, description and receipt.
pub fn pay_request(basket: &[(usize, u32)], receipt_number: String) -> PayRequest {
    let lines: Vec<OrderLine> = basket
        .iter()
        .map(|&(i, q)| order_line(&PRODUCTS[i % PRODUCTS.len()], q))
        .collect();
    let amount = lines.iter().map(|l| l.total).sum();
    let items: u32 = basket.iter().map(|(_, q)| q).sum();
    PayRequest {
        amount: Amount::nok(amount),
        description: format!("Demo Store: {items} items"),
        order_lines: Some(lines),
        receipt_number: Some(receipt_number),
    }
}
