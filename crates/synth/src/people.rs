//! Synthetic people and their visits: every value is drawn from short built-in lists and digits,
//! never from a real record. Names combine common first and last names at random (a few with
//! accents and apostrophes, all in windows-1252, so legacy encodings can carry them); streets,
//! cities and ZIP codes are plausible but random; phone numbers use 555-01XX, the range kept for
//! fiction; SSNs are random digits in the ranges the pipeline accepts (area not 000, 666 or 9XX),
//! tied to nobody.

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::rng::Rng;

const FIRST: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "David",
    "Elizabeth",
    "William",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Carlos",
    "Karen",
    "Daniel",
    "Lisa",
    "Matthew",
    "Nancy",
    "Anthony",
    "Betty",
    "Mark",
    "Sandra",
    "José",
    "Zoë",
    "Ana",
    "Renée",
    "Luis",
    "Mei",
    "Ahmed",
    "Fatima",
    "Nguyen",
    "Olga",
    "Björn",
    "Siobhan",
];
const LAST: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "O'Brien",
    "Müller",
    "Peña",
    "Nguyen",
    "Kowalski",
    "Van der Berg",
    "St. John",
    "Okafor",
    "Haddad",
];
const STREETS: &[&str] = &[
    "Maple St",
    "Oak Ave",
    "Elm St",
    "Pine Rd",
    "Cedar Ln",
    "Harbor Way",
    "Mill Pond Rd",
    "Church St",
    "Bridge St",
    "Washington Ave",
    "Lake Shore Dr",
    "Orchard Hill Rd",
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Springfield", "MA", "011"),
    ("Lowell", "MA", "018"),
    ("Worcester", "MA", "016"),
    ("Providence", "RI", "029"),
    ("Hartford", "CT", "061"),
    ("Nashua", "NH", "030"),
    ("Burlington", "VT", "054"),
    ("Portland", "ME", "041"),
];
/// ICD-10-CM codes as senders write them (no dots): hypertension, type 2 diabetes, asthma,
/// low back pain, anxiety, upper respiratory infection, hyperlipidaemia, a routine visit.
const DX: &[&str] = &["I10", "E119", "J45909", "M545", "F419", "J069", "E785", "Z0000", "R509", "K219"];

/// One synthetic person and one visit.
#[derive(Debug, Clone)]
pub(crate) struct Person {
    pub mrn: String,
    pub encounter_id: String,
    pub first: String,
    pub last: String,
    pub middle: String,
    pub dob: NaiveDate,
    pub female: bool,
    pub ssn: String,
    pub street: String,
    /// A second address line (an apartment), for some people.
    pub unit: Option<String>,
    pub city: String,
    pub state: String,
    pub zip: String,
    pub phone: String,
    pub work_phone: String,
    pub email: String,
    pub visit: NaiveDateTime,
    pub facility: String,
    pub dx: Vec<String>,
    pub charges: f64,
}

impl Person {
    /// The person of record `i` (its own stream: the same record is the same person).
    pub fn draw(r: &mut Rng, i: u64) -> Self {
        let first = r.pick(FIRST).to_string();
        let last = r.pick(LAST).to_string();
        let (city, state, zip3) = *r.pick(CITIES);
        let dob =
            NaiveDate::from_num_days_from_ce_opt(r.range(704_000, 737_000) as i32).unwrap_or(NaiveDate::MIN);
        let day =
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or(NaiveDate::MIN) + chrono::Days::new(r.below(700));
        let time = NaiveTime::from_hms_opt(r.range(7, 19) as u32, r.below(60) as u32, r.below(60) as u32)
            .unwrap_or(NaiveTime::MIN);
        let dx = (0..r.range(1, 3)).map(|_| r.pick(DX).to_string()).collect();
        let email = format!("{}.{}{}@example.org", ascii_lower(&first), ascii_lower(&last), r.below(100));
        Self {
            mrn: format!("M{:07}", i + 1),
            encounter_id: format!("V{:07}", i + 1),
            middle: char::from(b'A' + r.below(26) as u8).to_string(),
            female: r.below(2) == 0,
            ssn: format!("{:03}{:02}{:04}", r.range(1, 665), r.range(1, 99), r.range(1, 9999)),
            street: format!("{} {}", r.range(1, 9999), r.pick(STREETS)),
            unit: (r.below(5) == 0).then(|| format!("Apt {}", r.range(1, 40))),
            city: city.to_string(),
            state: state.to_string(),
            zip: format!("{zip3}{}", r.digits(2)),
            phone: format!("{}5550{}", r.range(201, 989), r.range(100, 199)),
            work_phone: format!("{}5550{}", r.range(201, 989), r.range(100, 199)),
            email,
            visit: day.and_time(time),
            facility: "Synthetic Health Clinic".to_string(),
            dx,
            charges: r.range(2_500, 950_000) as f64 / 100.0,
            first,
            last,
            dob,
        }
    }
}

/// A name as an e-mail address writes it: letters only, accents dropped, lower case.
fn ascii_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'é' | 'ë' | 'è' => 'e',
            'ö' | 'ó' => 'o',
            'ü' | 'ú' => 'u',
            'ñ' => 'n',
            'á' | 'à' => 'a',
            c => c,
        })
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
