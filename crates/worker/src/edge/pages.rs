//! The router's own answers: short HTML pages that say what happened and whose fault it was.

/// Why the router answered a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    NoApp,
    NotRunning,
    BadGateway,
    Timeout,
    BadRequest,
    HeadTooLarge,
}

impl Failure {
    pub fn status(self) -> u16 {
        match self {
            Failure::NoApp => 404,
            Failure::NotRunning => 503,
            Failure::BadGateway => 502,
            Failure::Timeout => 504,
            Failure::BadRequest => 400,
            Failure::HeadTooLarge => 431,
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Failure::NoApp => "Not Found",
            Failure::NotRunning => "Service Unavailable",
            Failure::BadGateway => "Bad Gateway",
            Failure::Timeout => "Gateway Timeout",
            Failure::BadRequest => "Bad Request",
            Failure::HeadTooLarge => "Request Header Fields Too Large",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Failure::NoApp => "No app here",
            Failure::NotRunning => "App not running",
            Failure::BadGateway => "The app did not answer",
            Failure::Timeout => "The app took too long",
            Failure::BadRequest => "Bad request",
            Failure::HeadTooLarge => "Request headers too large",
        }
    }

    fn detail(self) -> &'static str {
        match self {
            Failure::NoApp => {
                "No app on this platform answers to this hostname. Check the address; if it is your \
                 app's custom domain, verify the domain in the dashboard."
            }
            Failure::NotRunning => {
                "This app exists but is not running right now (stopped, crashed or not deployed yet). \
                 Its owner can start or redeploy it from the dashboard."
            }
            Failure::BadGateway => {
                "The platform reached this app's container but it did not answer properly \
                 (it may be starting, crashing or not listening on its configured port). \
                 Its owner can check the app's logs in the dashboard."
            }
            Failure::Timeout => {
                "The app did not start answering within 60 seconds. Its owner can check the app's logs."
            }
            Failure::BadRequest => {
                "The request was not valid HTTP/1.1 (a malformed line or header, or conflicting \
                 headers such as two Host headers). Fix the client that sent it."
            }
            Failure::HeadTooLarge => {
                "The request's line and headers exceed 64 KiB. Send fewer or shorter headers \
                 (large cookies are the usual cause)."
            }
        }
    }

    /// The page's HTML.
    pub fn html(self) -> String {
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\
             <body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>{code} — {title}</h1>\
             <p>{detail}</p><hr><small>WiseHosting edge router</small></body></html>\n",
            code = self.status(),
            title = self.title(),
            detail = self.detail(),
        )
    }

    /// The whole HTTP/1.1 response, appended to `out`; `close` adds `Connection: close`.
    pub fn write_response(self, close: bool, out: &mut Vec<u8>) {
        let body = self.html();
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n\
             Date: {}\r\nContent-Length: {}\r\n{}\r\n",
            self.status(),
            self.reason(),
            httpdate::fmt_http_date(std::time::SystemTime::now()),
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
        );
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(body.as_bytes());
    }
}
