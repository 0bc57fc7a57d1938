//! The seam between the HTTP server and the dialect: one typed [`Request`] in, one typed
//! [`Response`] out, reads and writes alike.
//!
//! The server turns its HTTP request into a [`Request`] (the method, the relation the path
//! names, the query string, the headers the dialect reads) and keeps the transport to itself:
//! authentication, limits, deadlines, connection pools, durability waits, metrics. Each
//! request is then three steps, the same for reads and writes:
//!
//! 1. `prepare`: [`ReadCall::prepare`] / [`WriteCall::prepare`] parse what needs no schema on
//!    the request's own thread, and split it into the *call* (what runs on a connection) and
//!    the *answer* (what the response needs besides the call's outcome).
//! 2. `run`: [`ReadCall::run`] / [`WriteCall::run`] plan against the schema cache and execute
//!    on the connection the server hands over.
//! 3. `respond`: [`ReadAnswer`] / [`WriteAnswer`] turn the outcome into a [`Response`]:
//!    status, PostgREST's headers (typed, see [`ResponseHeaders`]) and body.
//!
//! A write's body is parsed between 1 and 2 ([`WriteCall::payload_format`], then
//! [`PayloadFormat::parse`], [`WriteCall::set_payload`]), so the server decides where a large body is parsed and checks a
//! CSV header's names against its schema cache first.

use crate::access::Access;
use crate::error::ApiError;
use crate::functions::InsertCounter;
use crate::headers::{
    AppliedPreference, MediaType, PreferenceApplied, Preferences, RequestHeaders, SCHEMA,
    check_profile, parse_range,
};
use crate::query::{QueryParams, canonical_query};
use std::sync::Arc;

use crate::read::exec::{BodyStream, Prebuilt, ReadHead, ReadOutcome, ReadOutput, read, read_with};
use crate::read::plan::{Limits, plan_read_as};
use crate::read::plan_cache::{PlanCache, Planned, Shape, Template, cacheable};
use crate::schema_cache::SchemaCache;
use crate::write::body::{BodyFormat, Payload, csv_header, parse_payload};
use crate::write::exec::{WriteOutput, execute_write};
use crate::write::plan::{Mutation, WriteOptions, WriteRequest, plan_write_as};

/// The methods the dialect answers on a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Patch,
    Put,
    Delete,
}

impl Method {
    /// The write a method asks for; `None` for a read.
    pub fn mutation(self) -> Option<Mutation> {
        match self {
            Method::Get | Method::Head => None,
            Method::Post => Some(Mutation::Insert),
            Method::Patch => Some(Mutation::Update),
            Method::Put => Some(Mutation::Upsert),
            Method::Delete => Some(Mutation::Delete),
        }
    }
}

/// The request headers the dialect reads, as text (absent or not visible ASCII: `None`).
#[derive(Debug, Clone, Default)]
pub struct RequestHeaderValues<'a> {
    pub accept: Option<&'a str>,
    /// Every `Prefer` header, in the order sent.
    pub prefer: Vec<&'a str>,
    pub range: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub accept_profile: Option<&'a str>,
    pub content_profile: Option<&'a str>,
}

/// A request on a relation, as the dialect reads it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub method: Method,
    /// The relation the path names, percent-decoded.
    pub relation: &'a str,
    /// The path segment as sent (for `Content-Location`).
    pub raw_segment: &'a str,
    /// The query string as sent, without `?`.
    pub query: &'a str,
    pub headers: RequestHeaderValues<'a>,
}

/// The headers of a [`Response`] the dialect decides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseHeaders {
    pub content_type: Option<&'static str>,
    pub content_range: Option<String>,
    pub content_location: Option<String>,
    pub location: Option<String>,
    pub vary: Option<&'static str>,
    pub preference_applied: PreferenceApplied,
    /// `Content-Profile`: sent when the request named a profile.
    pub content_profile: Option<&'static str>,
}

/// The body of a [`Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body at all (HEAD, 204).
    None,
    /// The whole body (possibly empty, then sent with `Content-Length: 0`).
    Bytes(Vec<u8>),
    /// The body goes through the [`BodyStream`] the read was given.
    Streamed,
}

/// A response: status, headers and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: ResponseHeaders,
    pub body: Body,
}

/// What a read runs on a connection (see the module documentation).
#[derive(Debug, Clone)]
pub struct ReadCall {
    relation: String,
    /// `None` when the parse was put off: a plan of the request's shape is cached, so the
    /// query string is known to parse ([`ReadCall::prepare_cached`]).
    params: Option<QueryParams>,
    headers: RequestHeaders,
    head: bool,
    cached: Option<Cached>,
}

/// A read that goes through the plan cache.
#[derive(Debug, Clone)]
struct Cached {
    plans: Arc<PlanCache>,
    shape: Shape,
    /// The plan kept for the shape when the call was prepared, if any.
    found: Option<Arc<Template>>,
    /// The query string, for the parse put off (see [`ReadCall::params`]).
    query: Option<String>,
}

/// What a read's response needs besides its outcome.
#[derive(Debug, Clone)]
pub struct ReadAnswer {
    media: MediaType,
    profile_sent: bool,
    min_txid: Option<u64>,
    content_location: String,
}

impl ReadCall {
    /// Parses a GET or HEAD: the query string, `Range` (GET only), `Accept`, `Prefer` and
    /// `Accept-Profile`, in that order.
    pub fn prepare(req: &Request<'_>) -> Result<(ReadCall, ReadAnswer), ApiError> {
        Self::prepare_with(req, None)
    }

    /// [`ReadCall::prepare`], with the read's plan from `plans` when one of the request's shape
    /// is kept there, and kept there after the read otherwise (see `read/plan_cache.rs`).
    /// `role` is the role the request runs as (it keeps different roles' plans apart).
    /// Errors, and their order, are [`ReadCall::prepare`]'s.
    pub fn prepare_cached(
        req: &Request<'_>,
        plans: &Arc<PlanCache>,
        role: Option<&str>,
    ) -> Result<(ReadCall, ReadAnswer), ApiError> {
        Self::prepare_with(req, Some((plans, role)))
    }

    fn prepare_with(
        req: &Request<'_>,
        plans: Option<(&Arc<PlanCache>, Option<&str>)>,
    ) -> Result<(ReadCall, ReadAnswer), ApiError> {
        let head = req.method == Method::Head;
        // The headers are read before the query string only to find the shape; a bad query
        // string still gives its error first.
        let headers = match Self::headers(req, head) {
            Ok(h) => h,
            Err(e) => {
                QueryParams::parse(req.query)?;
                return Err(e);
            }
        };
        let cached = plans.and_then(|(plans, role)| {
            let shape = Shape::of(req.method, req.relation, req.query, &headers, role)?;
            let found = plans.get(&shape);
            Some(Cached {
                plans: plans.clone(),
                shape,
                query: found.as_ref().map(|_| req.query.to_string()),
                found,
            })
        });
        // A kept plan of this shape says the query string parses: the parse waits until the
        // plan turns out stale (if ever).
        let params = match cached.as_ref().and_then(|c| c.query.as_ref()) {
            Some(_) => None,
            None => Some(QueryParams::parse(req.query)?),
        };
        let mut location = String::with_capacity(2 + req.raw_segment.len() + req.query.len());
        location.push('/');
        location.push_str(req.raw_segment);
        if !req.query.is_empty() {
            location.push('?');
            location.push_str(&canonical_query(req.query));
        }
        let answer = ReadAnswer {
            media: headers.media,
            profile_sent: headers.profile_sent,
            min_txid: headers.prefer.min_txid,
            content_location: location,
        };
        let call = ReadCall {
            relation: req.relation.to_string(),
            params,
            headers,
            head,
            cached,
        };
        Ok((call, answer))
    }

    /// `Range` (GET only), `Accept`, `Prefer` and `Accept-Profile`, in that order.
    fn headers(req: &Request<'_>, head: bool) -> Result<RequestHeaders, ApiError> {
        let range = match (head, req.headers.range) {
            (false, Some(r)) => parse_range(r)?,
            _ => None,
        };
        Ok(RequestHeaders {
            media: MediaType::negotiate(req.headers.accept)?,
            prefer: Preferences::parse(req.headers.prefer.iter().copied())?,
            range,
            profile_sent: check_profile(req.headers.accept_profile)?,
        })
    }

    /// Plans the read against `cache` (as `access`'s role; `None`: unrestricted) and runs it
    /// on `conn`: a body within `buffer_limit` bytes comes back whole; a larger one goes to
    /// `stream` when there is one (else [`ReadOutcome::TooLarge`]). A read prepared with
    /// [`ReadCall::prepare_cached`] takes a kept plan made against this `cache` and `limits`,
    /// or keeps the plan it makes.
    pub fn run(
        &self,
        conn: &rusqlite::Connection,
        cache: &SchemaCache,
        limits: Limits,
        buffer_limit: usize,
        stream: Option<&mut dyn BodyStream>,
        access: Option<&Access<'_>>,
    ) -> Result<ReadOutcome, ApiError> {
        let cached = self.cached.as_ref().filter(|_| cacheable(access));
        if let Some(c) = cached
            && let Some(t) = c.found.as_ref().filter(|t| t.fits(cache, limits))
        {
            c.plans.hit();
            let slots = t.values(&c.shape);
            let prebuilt = Prebuilt {
                sql: &t.sql,
                shaper: &t.shaper,
                slots: &slots,
            };
            return read_with(
                conn,
                &t.plan,
                self.head,
                buffer_limit,
                stream,
                Some(&prebuilt),
            );
        }
        let parsed;
        let params = match (
            &self.params,
            self.cached.as_ref().and_then(|c| c.query.as_ref()),
        ) {
            (Some(p), _) => p,
            (None, Some(q)) => {
                parsed = QueryParams::parse(q)?;
                &parsed
            }
            (None, None) => return Err(ApiError::internal("a read without its query")),
        };
        let plan = plan_read_as(
            cache,
            &self.relation,
            params,
            &self.headers,
            limits,
            access,
            false,
        )?;
        if let Some(c) = cached {
            let planned = Planned {
                plan: &plan,
                cache,
                relation: &self.relation,
                headers: &self.headers,
                limits,
                access,
            };
            c.plans.learn(&c.shape, &planned);
        }
        read(conn, &plan, self.head, buffer_limit, stream)
    }
}

impl ReadAnswer {
    /// `Prefer: min-txid`: the replication position the read must reflect (the server waits
    /// for it before the read begins).
    pub fn min_txid(&self) -> Option<u64> {
        self.min_txid
    }

    /// The response of a read whose body was kept whole (empty for HEAD).
    pub fn whole(self, out: ReadOutput, head: bool) -> Response {
        let body = if head {
            Body::None
        } else {
            Body::Bytes(out.body)
        };
        self.respond(out.status, out.content_range, out.preference_applied, body)
    }

    /// The response of a read whose body streams.
    pub fn streamed(self, head: ReadHead) -> Response {
        self.respond(
            head.status,
            head.content_range,
            head.preference_applied,
            Body::Streamed,
        )
    }

    fn respond(
        self,
        status: u16,
        content_range: String,
        mut applied: PreferenceApplied,
        body: Body,
    ) -> Response {
        if let Some(m) = self.min_txid {
            applied.push(AppliedPreference::MinTxid(m));
        }
        Response {
            status,
            headers: ResponseHeaders {
                content_type: Some(self.media.content_type()),
                content_range: Some(content_range),
                content_location: Some(self.content_location),
                location: None,
                vary: Some("Accept, Prefer, Range"),
                preference_applied: applied,
                content_profile: self.profile_sent.then_some(SCHEMA),
            },
            body,
        }
    }
}

/// What a write runs on a connection (see the module documentation).
#[derive(Debug, Clone)]
pub struct WriteCall {
    req: WriteRequest,
}

/// How a write's body is parsed ([`WriteCall::payload_format`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadFormat {
    pub format: BodyFormat,
    columns_given: bool,
}

impl PayloadFormat {
    /// Parses `body` (on whichever thread the caller likes).
    pub fn parse(self, body: &[u8]) -> Result<Payload, ApiError> {
        parse_payload(body, self.format, self.columns_given)
    }
}

/// What a write's response needs besides its outcome.
#[derive(Debug, Clone, Copy)]
pub struct WriteAnswer {
    media: MediaType,
    profile_sent: bool,
}

impl WriteCall {
    /// Parses a POST, PATCH, PUT or DELETE: the query string, `Accept` and `Prefer`, in that
    /// order. The body and its headers come next ([`WriteCall::payload_format`]), so the
    /// server may refuse the preferences first (a guarantee it cannot give).
    pub fn prepare(req: &Request<'_>) -> Result<WriteCall, ApiError> {
        let mutation = req.method.mutation().unwrap_or(Mutation::Delete);
        let query = QueryParams::parse(req.query)?;
        let media = MediaType::negotiate(req.headers.accept)?;
        let prefer = Preferences::parse(req.headers.prefer.iter().copied())?;
        Ok(WriteCall {
            req: WriteRequest {
                mutation,
                relation: req.relation.to_string(),
                query,
                media,
                prefer,
                payload: None,
            },
        })
    }

    pub fn mutation(&self) -> Mutation {
        self.req.mutation
    }

    pub fn preferences(&self) -> &Preferences {
        &self.req.prefer
    }

    /// Checks `Content-Profile` and reads the body's format from `Content-Type` (`None` for
    /// DELETE, whose body is ignored: postgrest-py sends `{}`), with what the response needs.
    pub fn payload_format(
        &self,
        req: &Request<'_>,
    ) -> Result<(Option<PayloadFormat>, WriteAnswer), ApiError> {
        let answer = WriteAnswer {
            media: self.req.media,
            profile_sent: check_profile(req.headers.content_profile)?,
        };
        if self.req.mutation == Mutation::Delete {
            return Ok((None, answer));
        }
        let format = PayloadFormat {
            format: BodyFormat::from_content_type(req.headers.content_type)?,
            // `?columns=` names the body's columns (PUT ignores it).
            columns_given: self.req.query.columns.is_some()
                && self.req.mutation != Mutation::Upsert,
        };
        Ok((Some(format), answer))
    }

    /// The column names a CSV body's rows will have (from `?columns=` or its header line),
    /// to check against the schema before any row is built ([`crate::check_names`]).
    pub fn csv_names(&self, format: PayloadFormat, body: &[u8]) -> Result<Vec<String>, ApiError> {
        match &self.req.query.columns {
            Some(columns) if format.columns_given => Ok(columns.clone()),
            _ => csv_header(body),
        }
    }

    /// Sets the parsed body.
    pub fn set_payload(&mut self, payload: Payload) {
        self.req.payload = Some(payload);
    }

    /// The parsed body's size in bytes (its JSON), for the writer's accounting.
    pub fn payload_bytes(&self) -> usize {
        self.req.payload.as_ref().map_or(0, |p| p.json.len())
    }

    /// The relation the write is for.
    pub fn relation(&self) -> &str {
        &self.req.relation
    }

    /// Plans the write against `cache` (as `access`'s role; `None`: unrestricted) and runs it
    /// on `conn`, inside the caller's transaction (`counter` is the connection's insert
    /// counter).
    pub fn run(
        &self,
        conn: &rusqlite::Connection,
        cache: &SchemaCache,
        options: &WriteOptions,
        counter: &InsertCounter,
        access: Option<&Access<'_>>,
    ) -> Result<WriteOutput, ApiError> {
        let plan = plan_write_as(cache, &self.req, options, access)?;
        let body = self.req.payload.as_ref().map_or("[]", |p| p.json.as_str());
        execute_write(conn, &plan, body, counter)
    }
}

impl WriteAnswer {
    /// The response of a write.
    pub fn respond(self, out: WriteOutput) -> Response {
        let content_type = out.body.is_some().then(|| self.media.content_type());
        let body = match out.body {
            Some(b) => Body::Bytes(b),
            None if out.status == 204 => Body::None,
            None => Body::Bytes(Vec::new()),
        };
        Response {
            status: out.status,
            headers: ResponseHeaders {
                content_type,
                content_range: out.content_range,
                content_location: None,
                location: out.location,
                vary: None,
                preference_applied: out.preference_applied,
                content_profile: self.profile_sent.then_some(SCHEMA),
            },
            body,
        }
    }
}
