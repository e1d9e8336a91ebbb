//! Text values of the dimension tables: business keys, syllable names and word lists.
//!
//! TPC-DS business keys (`*_id`, `char(16)`) are 16 upper-case letters; names of brands,
//! manufacturers and products are built from one syllable per decimal digit of a number
//! ("bar", "ought", "able", ... for 0, 1, 2, ...), as in TPC-DS data. The word lists are
//! this generator's own: realistic in shape (lengths, cardinalities), not dsdgen's.

use crate::rng::Rng;

/// Syllable of each decimal digit.
pub const SYLLABLES: [&str; 10] = [
    "bar", "ought", "able", "pri", "pres", "ese", "anti", "cally", "ation", "eing",
];

/// The 16-letter business key of a number: "AAAAAAAA" followed by the number in base 16
/// with digits 'A'..='P', most significant first (unique for n < 16^8).
pub fn business_key(n: u64) -> String {
    let mut key = [b'A'; 16];
    let mut v = n;
    for slot in key[8..].iter_mut().rev() {
        *slot = b'A' + (v % 16) as u8;
        v /= 16;
    }
    debug_assert_eq!(v, 0, "business key overflow for {n}");
    String::from_utf8_lossy(&key).into_owned()
}

/// A name made of one syllable per decimal digit of `n` (e.g. 12 -> "oughtable").
pub fn syllable_name(n: u64) -> String {
    n.to_string()
        .bytes()
        .map(|d| SYLLABLES[usize::from(d - b'0')])
        .collect()
}

/// Uniform choice from a list.
pub fn pick<'a>(r: &mut Rng, list: &[&'a str]) -> &'a str {
    list[r.below(list.len() as u64) as usize]
}

/// A sentence of random words ending in '.', at most `max_len` bytes long (at least one
/// word).
pub fn sentence(r: &mut Rng, max_len: usize) -> String {
    let target = 20 + r.below((max_len.saturating_sub(20)) as u64 + 1) as usize;
    let mut s = String::with_capacity(target + 16);
    loop {
        let w = pick(r, &WORDS);
        let extra = if s.is_empty() { w.len() } else { w.len() + 1 };
        if !s.is_empty() && s.len() + extra > target.min(max_len.saturating_sub(1)) {
            break;
        }
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(w);
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect::<String>() + ".",
        None => s,
    }
}

pub const WORDS: [&str; 64] = [
    "able",
    "about",
    "across",
    "after",
    "again",
    "almost",
    "already",
    "always",
    "another",
    "areas",
    "around",
    "back",
    "basic",
    "better",
    "between",
    "black",
    "bright",
    "careful",
    "certain",
    "clear",
    "close",
    "common",
    "current",
    "different",
    "early",
    "easy",
    "entire",
    "even",
    "final",
    "fine",
    "free",
    "full",
    "general",
    "good",
    "great",
    "happy",
    "heavy",
    "high",
    "important",
    "large",
    "light",
    "little",
    "local",
    "long",
    "main",
    "major",
    "modern",
    "national",
    "natural",
    "new",
    "open",
    "other",
    "particular",
    "quick",
    "real",
    "recent",
    "simple",
    "small",
    "special",
    "strong",
    "usual",
    "various",
    "whole",
    "young",
];

/// (category, its classes) — ten categories as in TPC-DS, `i_category_id` 1..=10.
pub const CATEGORIES: [(&str, &[&str]); 10] = [
    ("Women", &["dresses", "fragrances", "maternity", "swimwear"]),
    ("Men", &["accessories", "pants", "shirts", "sports-apparel"]),
    (
        "Children",
        &["infants", "newborn", "school-uniforms", "toddlers"],
    ),
    ("Shoes", &["athletic", "kids", "mens", "womens"]),
    ("Music", &["classical", "country", "pop", "rock"]),
    (
        "Jewelry",
        &["bracelets", "earings", "estate", "rings", "semi-precious"],
    ),
    (
        "Home",
        &[
            "bathroom",
            "bedding",
            "decor",
            "furniture",
            "kids",
            "lighting",
        ],
    ),
    (
        "Sports",
        &[
            "archery", "baseball", "camping", "fishing", "golf", "tennis",
        ],
    ),
    (
        "Books",
        &[
            "arts",
            "business",
            "computers",
            "cooking",
            "history",
            "travel",
        ],
    ),
    (
        "Electronics",
        &["audio", "cameras", "camcorders", "monitors", "televisions"],
    ),
];

pub const SIZES: [&str; 7] = [
    "petite",
    "small",
    "medium",
    "large",
    "extra large",
    "economy",
    "N/A",
];

pub const COLORS: [&str; 24] = [
    "almond",
    "antique",
    "aquamarine",
    "azure",
    "beige",
    "black",
    "blue",
    "brown",
    "burlywood",
    "chartreuse",
    "chocolate",
    "coral",
    "cream",
    "cyan",
    "firebrick",
    "forest",
    "gainsboro",
    "ghost",
    "green",
    "honeydew",
    "indian",
    "ivory",
    "khaki",
    "lavender",
];

pub const UNITS: [&str; 16] = [
    "Each", "Dozen", "Case", "Pallet", "Gross", "Carton", "Box", "Bunch", "Bundle", "Oz", "Lb",
    "Ton", "Tsp", "Tbl", "Cup", "N/A",
];

pub const FIRST_NAMES_F: [&str; 20] = [
    "Mary",
    "Patricia",
    "Linda",
    "Barbara",
    "Elizabeth",
    "Jennifer",
    "Maria",
    "Susan",
    "Margaret",
    "Dorothy",
    "Lisa",
    "Nancy",
    "Karen",
    "Betty",
    "Helen",
    "Sandra",
    "Donna",
    "Carol",
    "Ruth",
    "Sharon",
];

pub const FIRST_NAMES_M: [&str; 20] = [
    "James",
    "John",
    "Robert",
    "Michael",
    "William",
    "David",
    "Richard",
    "Charles",
    "Joseph",
    "Thomas",
    "Christopher",
    "Daniel",
    "Paul",
    "Mark",
    "Donald",
    "George",
    "Kenneth",
    "Steven",
    "Edward",
    "Brian",
];

pub const LAST_NAMES: [&str; 30] = [
    "Smith",
    "Johnson",
    "Williams",
    "Jones",
    "Brown",
    "Davis",
    "Miller",
    "Wilson",
    "Moore",
    "Taylor",
    "Anderson",
    "Thomas",
    "Jackson",
    "White",
    "Harris",
    "Martin",
    "Thompson",
    "Garcia",
    "Martinez",
    "Robinson",
    "Clark",
    "Rodriguez",
    "Lewis",
    "Lee",
    "Walker",
    "Hall",
    "Allen",
    "Young",
    "Hernandez",
    "King",
];

pub const COUNTRIES: [&str; 24] = [
    "UNITED STATES",
    "CANADA",
    "MEXICO",
    "BRAZIL",
    "ARGENTINA",
    "CHILE",
    "UNITED KINGDOM",
    "IRELAND",
    "FRANCE",
    "GERMANY",
    "ITALY",
    "SPAIN",
    "PORTUGAL",
    "NETHERLANDS",
    "BELGIUM",
    "SWEDEN",
    "NORWAY",
    "POLAND",
    "GREECE",
    "TURKEY",
    "INDIA",
    "JAPAN",
    "AUSTRALIA",
    "NEW ZEALAND",
];

pub const EMAIL_DOMAINS: [&str; 6] = [
    "example.com",
    "example.org",
    "mail.example",
    "post.example",
    "inbox.example",
    "web.example",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        assert_eq!(business_key(0), "AAAAAAAAAAAAAAAA");
        assert_eq!(business_key(1), "AAAAAAAAAAAAAAAB");
        assert_eq!(business_key(17), "AAAAAAAAAAAAAABB");
        assert_eq!(business_key(16u64.pow(8) - 1), "AAAAAAAAPPPPPPPP");
        assert_eq!(syllable_name(12), "oughtable");
        assert_eq!(syllable_name(0), "bar");
    }

    #[test]
    fn sentences_respect_their_length() {
        let mut r = Rng::from_seed(1);
        for _ in 0..1000 {
            let s = sentence(&mut r, 200);
            assert!(!s.is_empty() && s.len() <= 200, "{s}");
            assert!(s.ends_with('.'));
        }
    }
}
