//! Google reCAPTCHA, as Sunbird checks it on `/v2/user/exists` (`CaptchaHelper`): the client's
//! answer and the site secret are posted to the verify URL, and only `{"success": true}` passes.
//! A failed call counts as a refusal: the check fails closed.

use std::time::Duration;

use serde_json::Value;

/// The check of a client's captcha answer.
#[derive(Clone)]
pub enum Captcha {
    /// No check (`[captcha] enabled = false`, the default).
    Off,
    Google {
        client: reqwest::Client,
        verify_url: String,
        secret: String,
        mobile_secret: String,
    },
}

impl std::fmt::Debug for Captcha {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Captcha::Off => f.write_str("Captcha::Off"),
            Captcha::Google { verify_url, .. } => f
                .debug_struct("Captcha::Google")
                .field("verify_url", verify_url)
                .finish_non_exhaustive(),
        }
    }
}

impl Captcha {
    pub fn google(
        verify_url: String,
        secret: String,
        mobile_secret: String,
        timeout: Duration,
    ) -> anyhow::Result<Captcha> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Captcha::Google {
            client,
            verify_url,
            secret,
            mobile_secret,
        })
    }

    /// Whether the request may go on: always when off; else the answer must be given and
    /// accepted. `mobile` picks the mobile app's secret (Sunbird: the `app` query parameter).
    pub async fn passes(&self, answer: Option<&str>, mobile: bool) -> bool {
        let Captcha::Google {
            client,
            verify_url,
            secret,
            mobile_secret,
        } = self
        else {
            return true;
        };
        let Some(answer) = answer.filter(|answer| !answer.is_empty()) else {
            return false;
        };
        let secret = if mobile { mobile_secret } else { secret };
        let sent = client
            .post(verify_url)
            .form(&[("secret", secret.as_str()), ("response", answer)])
            .send()
            .await;
        let body = match sent {
            Ok(response) if response.status().is_success() => response.json::<Value>().await,
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    "captcha verify refused"
                );
                return false;
            }
            Err(error) => {
                tracing::warn!(error = %error, "captcha verify unreachable");
                return false;
            }
        };
        matches!(body, Ok(body) if body.get("success") == Some(&Value::Bool(true)))
    }
}
