//! What marionette writes into every animated video and picture so that it says what it is: a
//! synthetic animation of a portrait, made by marionette (name, version, engine). Videos get a
//! `comment` metadata entry (MP4/MOV/MKV/WebM/AVI, through ffmpeg's `-metadata`); PNG frames get
//! `tEXt` chunks (`Software`, `Source`, `Description`, `Comment`) and an XMP packet (`iTXt`
//! `XML:com.adobe.xmp`) with IPTC's digital source type, which photo tools and platforms read.
//! The optional visible badge is [`crate::output::badge`].

/// The version of marionette writing.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// IPTC digital source type of media made by a trained model (the FOMM engine).
pub const IPTC_TRAINED: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia";
/// IPTC digital source type of media made by an algorithm without training (the classic engine).
pub const IPTC_ALGORITHMIC: &str =
    "http://cv.iptc.org/newscodes/digitalsourcetype/algorithmicMedia";

/// Who made a picture, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The engine's name (`fomm`, `classic`, or what else made the picture).
    pub engine: String,
    /// Whether the engine is a trained model (FOMM) rather than a plain algorithm.
    pub trained: bool,
}

impl Provenance {
    /// Pictures made by the engine called `engine` (`fomm` is the trained one).
    pub fn for_engine(engine: &str) -> Self {
        Self {
            engine: engine.to_string(),
            trained: engine == "fomm",
        }
    }

    /// `marionette 0.1.0`.
    pub fn software(&self) -> String {
        format!("marionette {VERSION}")
    }

    /// The sentence written as a video's `comment` and a PNG's `Comment`.
    pub fn comment(&self) -> String {
        format!(
            "Synthetic animation of a portrait, not real footage: made by marionette {VERSION} \
             (engine: {}), which moves a still portrait.",
            self.engine
        )
    }

    /// The IPTC digital source type.
    pub fn digital_source_type(&self) -> &'static str {
        if self.trained {
            IPTC_TRAINED
        } else {
            IPTC_ALGORITHMIC
        }
    }

    /// ffmpeg `-metadata` entries for a video.
    pub fn video_tags(&self) -> Vec<(String, String)> {
        vec![("comment".into(), self.comment())]
    }

    /// PNG `tEXt` chunks (keyword, Latin-1 text; ours is ASCII).
    pub fn png_text(&self) -> Vec<(String, String)> {
        vec![
            ("Software".into(), self.software()),
            (
                "Source".into(),
                format!("marionette {VERSION}, engine {}", self.engine),
            ),
            (
                "Description".into(),
                "Synthetic animation of a portrait (AI-animated)".into(),
            ),
            ("Comment".into(), self.comment()),
        ]
    }

    /// An XMP packet: IPTC digital source type, the creator tool and a description.
    pub fn xmp(&self) -> String {
        format!(
            concat!(
                "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n",
                "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n",
                " <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n",
                "  <rdf:Description rdf:about=\"\"\n",
                "    xmlns:Iptc4xmpExt=\"http://iptc.org/std/Iptc4xmpExt/2008-02-29/\"\n",
                "    xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\"\n",
                "    xmlns:dc=\"http://purl.org/dc/elements/1.1/\"\n",
                "    Iptc4xmpExt:DigitalSourceType=\"{source}\"\n",
                "    xmp:CreatorTool=\"{tool}\">\n",
                "   <dc:description><rdf:Alt><rdf:li xml:lang=\"x-default\">{comment}</rdf:li></rdf:Alt></dc:description>\n",
                "  </rdf:Description>\n",
                " </rdf:RDF>\n",
                "</x:xmpmeta>\n",
                "<?xpacket end=\"r\"?>"
            ),
            source = self.digital_source_type(),
            tool = xml_escape(&self.software()),
            comment = xml_escape(&self.comment()),
        )
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn says_what_made_it() {
        let p = Provenance::for_engine("fomm");
        let c = p.comment();
        assert!(c.contains("marionette") && c.contains(VERSION) && c.contains("fomm"));
        assert!(c.contains("Synthetic animation of a portrait"));
        assert!(c.is_ascii());
        assert!(p.xmp().contains(IPTC_TRAINED));
        assert!(
            Provenance::for_engine("classic")
                .xmp()
                .contains(IPTC_ALGORITHMIC)
        );
        assert!(
            p.png_text()
                .iter()
                .all(|(k, v)| k.len() < 80 && v.is_ascii())
        );
    }
}
