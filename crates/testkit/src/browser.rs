//! A cookie-keeping HTTP client that walks server-rendered pages the way a browser without
//! JavaScript does: GET a page, read its form, POST it, follow 303 redirects.

pub struct Browser {
    http: reqwest::Client,
    /// Same cookies, but does not follow redirects: to catch the redirect back to a client.
    manual: reqwest::Client,
    base: String,
}

pub struct Page {
    pub status: u16,
    pub url: String,
    pub html: String,
}

impl Page {
    /// The value of the hidden `csrf` field of the page's form.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self
            .html
            .find(marker)
            .map(|i| i + marker.len())
            .unwrap_or_else(|| panic!("page {} has no CSRF field: {}", self.url, self.html));
        let end = self.html[start..].find('"').expect("closing quote");
        self.html[start..start + end].to_string()
    }
}

/// `html` with the references an HTML escaper writes (`&lt;` or `&#60;`, and so on) turned back
/// into the characters, to compare a page with the text it shows.
pub fn unescape(html: &str) -> String {
    let mut out = html.to_string();
    for (refs, c) in [
        (["&lt;", "&#60;", "&#x3c;"], "<"),
        (["&gt;", "&#62;", "&#x3e;"], ">"),
        (["&quot;", "&#34;", "&#x22;"], "\""),
        (["&apos;", "&#39;", "&#x27;"], "'"),
        // Last: an escaped reference must not be decoded twice.
        (["&amp;", "&#38;", "&#x26;"], "&"),
    ] {
        for r in refs {
            out = out.replace(r, c);
        }
    }
    out
}

impl Browser {
    pub fn new(base: &str, ca_pem: Option<&str>) -> Browser {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let build = |follow: bool| {
            let mut b = reqwest::Client::builder()
                .use_rustls_tls()
                .cookie_provider(jar.clone());
            if !follow {
                b = b.redirect(reqwest::redirect::Policy::none());
            }
            if let Some(pem) = ca_pem {
                b = b.add_root_certificate(
                    reqwest::Certificate::from_pem(pem.as_bytes()).expect("CA"),
                );
            }
            b.build().expect("client")
        };
        Browser {
            http: build(true),
            manual: build(false),
            base: base.to_string(),
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        Page {
            status,
            url,
            html: resp.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(
            self.http
                .get(format!("{}{path}", self.base))
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    /// Posts a form as a same-origin browser would (with an `Origin` header).
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(form)
            .send()
            .await
            .expect("POST");
        Self::page(resp).await
    }

    /// Posts a form and returns the `Location` of the redirect it answers with.
    pub async fn post_for_redirect(&self, path: &str, form: &[(&str, &str)]) -> String {
        let resp = self
            .manual
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(form)
            .send()
            .await
            .expect("POST");
        assert_eq!(
            resp.status().as_u16(),
            303,
            "expected a redirect: {}",
            resp.text().await.unwrap_or_default()
        );
        resp.headers()["location"].to_str().unwrap().to_string()
    }

    /// GETs an absolute URL (following redirects on the STS host).
    pub async fn get_url(&self, url: &str) -> Page {
        Self::page(self.http.get(url).send().await.expect("GET")).await
    }

    /// GETs an absolute URL without following redirects; returns status and `Location`.
    pub async fn get_url_no_follow(&self, url: &str) -> (u16, Option<String>, String) {
        let resp = self.manual.get(url).send().await.expect("GET");
        let status = resp.status().as_u16();
        let loc = resp
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        (status, loc, resp.text().await.unwrap_or_default())
    }

    /// Posts a form from another site.
    pub async fn post_cross_site(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", "https://evil.example")
            .form(form)
            .send()
            .await
            .expect("POST");
        Self::page(resp).await
    }

    /// Enters `user_code`, signs in, and answers the consent page if one is shown.
    pub async fn complete_device_login(
        &self,
        user_code: &str,
        username: &str,
        password: &str,
        accept: bool,
    ) -> Page {
        let p = self.get("/devicelogin").await;
        let p = self
            .post(
                "/devicelogin",
                &[("csrf", &p.csrf()), ("user_code", user_code)],
            )
            .await;
        assert!(
            p.url.ends_with("/devicelogin/signin"),
            "code accepted: {}",
            p.html
        );
        let p = self
            .post(
                "/devicelogin/signin",
                &[
                    ("csrf", &p.csrf()),
                    ("username", username),
                    ("password", password),
                ],
            )
            .await;
        // The consent page has a form unless it only says that an admin must approve.
        if p.url.ends_with("/devicelogin/consent") && p.html.contains("name=\"csrf\"") {
            let action = if accept { "accept" } else { "cancel" };
            return self
                .post(
                    "/devicelogin/consent",
                    &[("csrf", &p.csrf()), ("action", action)],
                )
                .await;
        }
        p
    }
}
