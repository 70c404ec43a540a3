//! The languages wabot speaks on its own (built-in sentences, detection, rules).

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    En,
    Es,
    Pt,
}

impl Language {
    pub const ALL: [Language; 3] = [Language::En, Language::Es, Language::Pt];

    pub fn code(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Es => "es",
            Language::Pt => "pt",
        }
    }

    pub fn parse(code: &str) -> Option<Language> {
        Language::ALL
            .into_iter()
            .find(|l| l.code() == code.trim().to_lowercase())
    }
}
