//! Message templates: Sunbird's template names, default texts of the same meaning, and their
//! rendering with minijinja. A template's body is HTML-escaped where the template is HTML (an
//! email), plain otherwise (an SMS, a subject). Templates live in the store (seeded with these
//! defaults, overridable per tenant), so rendering runs on text an administrator wrote: it is
//! sandboxed by minijinja and bounded in work (fuel), and a template that does not render is
//! an error of the request, never a panic.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One template as stored in `message_template` (keyed by name, or name and tenant id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageTemplate {
    pub name: String,
    #[serde(default)]
    pub subject: String,
    pub body: String,
    /// An HTML email body (escaped); otherwise plain text.
    #[serde(default)]
    pub html: bool,
    /// The SMS provider's registered template id (India's DLT), for SMS templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms_template_id: Option<String>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub html: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("template {name} does not render: {reason}")]
pub struct TemplateError {
    pub name: String,
    pub reason: String,
}

/// Work one rendering may do (minijinja fuel): plenty for any message, and a bound on a loop
/// an administrator's template might run.
const FUEL: u64 = 100_000;

impl MessageTemplate {
    pub fn render(&self, vars: &Value) -> Result<Rendered, TemplateError> {
        let fail = |error: minijinja::Error| TemplateError {
            name: self.name.clone(),
            reason: error.to_string(),
        };
        let html = self.html;
        let mut environment = Environment::new();
        environment.set_fuel(Some(FUEL));
        environment.set_undefined_behavior(UndefinedBehavior::Lenient);
        environment.set_auto_escape_callback(move |name| {
            if html && name == "body" {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let context = minijinja::Value::from(minijinja::value::Serde(vars));
        let subject = environment
            .render_named_str("subject", &self.subject, context.clone())
            .map_err(fail)?;
        let body = environment
            .render_named_str("body", &self.body, context)
            .map_err(fail)?;
        Ok(Rendered {
            subject: subject.trim().to_string(),
            body,
            html,
        })
    }
}

/// The template `/v1/notification/email` renders when the request names none; the request's
/// `body` goes in as the caller's HTML, as Sunbird's template inserts it.
pub const DEFAULT_EMAIL_TEMPLATE: &str = "emailtemplate";
/// The OTP email without a `templateId`.
pub const OTP_EMAIL_TEMPLATE: &str = "otp";
/// The OTP SMS without a `templateId`.
pub const OTP_SMS_TEMPLATE: &str = "otpSmsTemplate";

/// The email template of an OTP request's `templateId` (Sunbird's pairs of SMS and email
/// templates).
pub fn otp_email_template(template_id: Option<&str>) -> &'static str {
    match template_id {
        Some("wardLoginOTP") => "verifyEmailOtpTemplateWard",
        Some("resetPasswordWithOtp") => "otpEmailResetPasswordTemplate",
        Some("otpContactUpdateTemplate") => "otpContactUpdateTemplateEmail",
        Some("otpDeleteUserTemplate") => "otpEmailDeleteUserTemplate",
        _ => OTP_EMAIL_TEMPLATE,
    }
}

/// The set-password link, by email and by SMS.
pub const RESET_LINK_EMAIL_TEMPLATE: &str = "resetPasswordLink";
/// A new account's welcome, with its set-password link (Sunbird's `welcome` and
/// `welcomeSmsTemplate`).
pub const WELCOME_EMAIL_TEMPLATE: &str = "welcome";
pub const WELCOME_SMS_TEMPLATE: &str = "welcomeSmsTemplate";
pub const RESET_LINK_SMS_TEMPLATE: &str = "resetPasswordLinkSms";

/// The notice of a tenant migration, by email and by SMS.
pub const MIGRATION_EMAIL_TEMPLATE: &str = "migrate_user_template";
pub const MIGRATION_SMS_TEMPLATE: &str = "migrateUserSmsTemplate";

/// The `templateId`s an OTP request may name.
pub const OTP_TEMPLATE_IDS: [&str; 4] = [
    "resetPasswordWithOtp",
    "wardLoginOTP",
    "otpContactUpdateTemplate",
    "otpDeleteUserTemplate",
];

fn email(name: &str, subject: &str, body: &str) -> MessageTemplate {
    MessageTemplate {
        name: name.into(),
        subject: subject.into(),
        body: body.into(),
        html: true,
        sms_template_id: None,
    }
}

fn sms(name: &str, body: &str) -> MessageTemplate {
    MessageTemplate {
        name: name.into(),
        subject: String::new(),
        body: body.into(),
        html: false,
        sms_template_id: None,
    }
}

const OTP_EMAIL_BODY: &str = "<p>Hello,</p>\n<p>{{ purpose }}: use the code <b>{{ otp }}</b>. It is valid for {{ otpExpiryInMinutes }} minutes; do not share it with anyone.</p>\n<p>{{ installationName }}</p>\n";
const OTP_SMS_BODY: &str = "{{ otp }} is your {{ installationName }} code ({{ purpose }}), valid for {{ otpExpiryInMinutes }} minutes. Do not share it.";

/// The templates seeded into a new store, by Sunbird's names.
pub fn defaults() -> Vec<MessageTemplate> {
    let otp_email = |name: &str, purpose: &str| {
        email(
            name,
            "{{ installationName }}: your one-time code",
            &OTP_EMAIL_BODY.replace("{{ purpose }}", purpose),
        )
    };
    let otp_sms =
        |name: &str, purpose: &str| sms(name, &OTP_SMS_BODY.replace("{{ purpose }}", purpose));
    vec![
        email(
            DEFAULT_EMAIL_TEMPLATE,
            "{{ subject }}",
            "<p>Hello {{ name }},</p>\n<div>{{ body | safe }}</div>\n<p>{{ regards }}<br>{{ orgName }}</p>\n",
        ),
        email(
            WELCOME_EMAIL_TEMPLATE,
            "Welcome to {{ installationName }}",
            "<p>Hello {{ name }},</p>\n<p>Your account on {{ installationName }} is ready{% if username %}; your user name is {{ username }}{% endif %}.</p>\n{% if link %}<p>Set your password here: <a href=\"{{ link }}\">{{ link }}</a> (valid for {{ linkExpiryInHours }} hours).</p>\n{% endif %}",
        ),
        sms(
            WELCOME_SMS_TEMPLATE,
            "Welcome to {{ installationName }}.{% if link %} Set your password: {{ link }}{% endif %}",
        ),
        otp_email(OTP_EMAIL_TEMPLATE, "To verify your contact"),
        otp_email("verifyEmailOtpTemplateWard", "To sign in your ward"),
        otp_email("otpEmailResetPasswordTemplate", "To reset your password"),
        otp_email(
            "otpContactUpdateTemplateEmail",
            "To change your contact details",
        ),
        otp_email("otpEmailDeleteUserTemplate", "To delete your account"),
        otp_sms(OTP_SMS_TEMPLATE, "to verify your contact"),
        otp_sms("wardLoginOTP", "to sign in your ward"),
        otp_sms("resetPasswordWithOtp", "to reset your password"),
        otp_sms("otpContactUpdateTemplate", "to change your contact details"),
        otp_sms("otpDeleteUserTemplate", "to delete your account"),
        email(
            RESET_LINK_EMAIL_TEMPLATE,
            "{{ installationName }}: set your password",
            "<p>Hello {{ name }},</p>\n<p>Set a new password here: <a href=\"{{ link }}\">{{ link }}</a>. The link works once and for {{ linkExpiryInHours }} hours.</p>\n",
        ),
        sms(
            RESET_LINK_SMS_TEMPLATE,
            "Set your {{ installationName }} password: {{ link }} (works once, for {{ linkExpiryInHours }} hours).",
        ),
        email(
            "accountMerge",
            "{{ installationName }}: your accounts were merged",
            "<p>Hello {{ name }},</p>\n<p>Your account {{ fromAccount }} was merged into this one. Sign in with this account from now on.</p>\n",
        ),
        sms(
            MIGRATION_SMS_TEMPLATE,
            "Your {{ installationName }} account now belongs to {{ orgName }}.",
        ),
        email(
            MIGRATION_EMAIL_TEMPLATE,
            "{{ installationName }}: your account moved to {{ orgName }}",
            "<p>Hello {{ name }},</p>\n<p>Your account now belongs to {{ orgName }}.</p>\n",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn named(name: &str) -> MessageTemplate {
        defaults()
            .into_iter()
            .find(|template| template.name == name)
            .expect("seeded")
    }

    #[test]
    fn an_email_body_is_escaped_and_its_subject_and_an_sms_are_not() {
        let rendered = named(DEFAULT_EMAIL_TEMPLATE)
            .render(&json!({"subject": "Fees & <dates>", "body": "<b>Due</b>", "name": "<script>x</script>"}))
            .expect("renders");
        assert_eq!(rendered.subject, "Fees & <dates>");
        // The caller's body is the caller's HTML (as Sunbird inserts it); other values are escaped.
        assert!(
            rendered.body.contains("<div><b>Due</b></div>"),
            "{}",
            rendered.body
        );
        assert!(
            rendered
                .body
                .contains("Hello &lt;script&gt;x&lt;&#x2f;script&gt;,"),
            "{}",
            rendered.body
        );
        let sms = named(OTP_SMS_TEMPLATE)
            .render(&json!({"otp": "123456", "installationName": "A&B", "otpExpiryInMinutes": 10}))
            .expect("renders");
        assert_eq!(
            sms.body,
            "123456 is your A&B code (to verify your contact), valid for 10 minutes. Do not share it."
        );
    }

    #[test]
    fn a_broken_or_endless_template_is_an_error() {
        let broken = sms("broken", "{% if %}");
        assert!(broken.render(&json!({})).is_err());
        let endless = sms(
            "endless",
            "{% for a in range(1000) %}{% for b in range(1000) %}x{% endfor %}{% endfor %}",
        );
        let error = endless.render(&json!({})).expect_err("out of fuel");
        assert_eq!(error.name, "endless");
    }

    #[test]
    fn every_otp_template_id_has_a_seeded_sms_and_email_template() {
        let names: Vec<String> = defaults().into_iter().map(|t| t.name).collect();
        for id in OTP_TEMPLATE_IDS {
            assert!(names.contains(&id.to_string()), "{id}");
            assert!(
                names.contains(&otp_email_template(Some(id)).to_string()),
                "{id}"
            );
        }
    }
}
