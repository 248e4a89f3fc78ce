//! One AdmissionReview in, one verdict out. The object is parsed with the manifest
//! parser (JSON is YAML), so a wrong field reads exactly as in `portcullis validate`;
//! then the whole live set plus this object is validated, so a Route that would lose a
//! match to an older Route is refused at apply time, naming the owner.
//!
//! Allowed with a warning: references to Services that do not exist yet (applying a
//! directory creates Routes and Services in any order) and validation warnings.
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation},
};
use portcullis_api::{Objects, parse_documents, validate::validate_objects};

use crate::index::Index;

/// The verdict on `review` given the objects the controller currently sees.
pub fn review(
    index: &Index,
    review: AdmissionReview<DynamicObject>,
) -> AdmissionReview<DynamicObject> {
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(e) => return AdmissionResponse::invalid(e.to_string()).into_review(),
    };
    decide(index, &request).into_review()
}

fn decide(index: &Index, request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if matches!(request.operation, Operation::Delete | Operation::Connect) {
        return response;
    }
    let Some(object) = &request.object else {
        return response;
    };
    let mut object = object.clone();
    if object.metadata.namespace.is_none() {
        object.metadata.namespace = request.namespace.clone();
    }
    // Status is ours to write; an edit of it alone is not the user's manifest.
    if let serde_json::Value::Object(map) = &mut object.data {
        map.remove("status");
    }
    let text = match serde_json::to_string(&object) {
        Ok(t) => t,
        Err(e) => return response.deny(e),
    };
    let doc = match parse_documents(&text).into_iter().next() {
        Some(Ok(doc)) => doc,
        Some(Err(e)) => {
            return response.deny(format!(
                "{}/{}: {}",
                object.metadata.namespace.as_deref().unwrap_or(""),
                request.name,
                e.message
            ));
        }
        None => return response.deny("empty object"),
    };
    let key = doc.key();
    let (mut objects, _) = index.objects();
    objects.insert(key.clone(), doc);
    let objects = Objects::from_documents(objects.values());
    let outcome = validate_objects(&objects, &index.certificates, &index.rules);
    let Some(report) = outcome.report(&key) else {
        return response;
    };
    // An auth bypass is refused whichever side of it this object is on: the Route whose
    // paths would be hidden, or the Route that would hide them.
    let bypasses = outcome
        .shadowed()
        .filter(|s| s.auth_bypassed && (s.issue.object == key || s.winner == key))
        .map(|s| format!("{} (AuthBypassed)", s.issue));
    let refused: Vec<String> = report
        .errors
        .iter()
        .chain(report.conflict.as_deref())
        .map(ToString::to_string)
        .chain(bypasses)
        .collect();
    if !refused.is_empty() {
        return response.deny(refused.join("\n"));
    }
    let warnings: Vec<String> = report
        .warnings
        .iter()
        .chain(&report.unresolved)
        .map(ToString::to_string)
        .chain(
            report
                .shadowed
                .iter()
                .map(|s| format!("{} (Shadowed)", s.issue)),
        )
        .collect();
    let mut response = response;
    response.warnings = (!warnings.is_empty()).then_some(warnings);
    response
}

#[cfg(test)]
#[path = "admission_tests.rs"]
mod tests;
