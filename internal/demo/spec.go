// Package demo generates a realistic, entirely synthetic incident for
// trying Impact on one machine: the incident spec of the December 2025
// Health Documents breach with its three cohorts, and a roster of made-up
// subjects distributed across them the way the real incident was.
//
// Nothing here is real patient data: subject ids are sequence numbers, the
// practices are numbered placeholders and the support numbers are fictional.
package demo

import (
	"io"
)

// IncidentID is the id of the demo incident.
const IncidentID = "mmh-2025-12"

// Cohort ids of the demo incident, in spec order (the notice priority).
const (
	CohortNorthland = "northland"
	CohortReferrals = "referrals"
	CohortUploads   = "uploads"
)

// Cohorts lists the demo cohort ids in spec order.
var Cohorts = []string{CohortNorthland, CohortReferrals, CohortUploads}

// Well-known demo subjects, stable for every seed and roster size, for
// documentation and copy-paste commands.
const (
	// AffectedSubject is always in the roster: affected, cohort northland.
	AffectedSubject = "patient-0000001"
	// UnderReviewSubject is always in the roster: under review, cohort
	// referrals.
	UnderReviewSubject = "patient-0000002"
	// NotAffectedSubject is never in the roster (its number is beyond the
	// generated population): not affected.
	NotAffectedSubject = "patient-9999999"
)

// spec is the demo incident spec. The support numbers are fictional (0800
// 000 0xx is not allocated to any real service).
const spec = `# Impact demo incident spec (synthetic). Upload with:
#   impactctl snapshot upload --incident mmh-2025-12 --spec spec.yaml --roster roster.csv
incident:
  id: mmh-2025-12
  title: Health Documents breach, December 2025
  started: 2025-12-04
  disclosed: 2025-12-19

# Cohort order is the notice priority: a patient in two cohorts gets the
# notice of the first one listed here.
cohorts:
  - id: northland
    title: Northland discharge summaries and referral letters
    data_categories: [discharge_summary, referral_letter, nhi_number, contact_details]
    support_contact: "0800 000 011 (Northland breach support line, 8am-8pm, 7 days)"
    notice:
      subject: Your health information was affected by the Health Documents breach
      body: |
        Kia ora,

        We are writing to tell you that some of your health information was taken in the Health Documents breach in December 2025.

        What was taken: hospital discharge summaries and referral letters from your Northland general practice, written 6 to 8 years ago. They can include your name, date of birth, NHI number, contact details, and notes about your care at the time.

        What was not taken: your current medical records, prescriptions, and any bank or payment details.

        What you can do: be careful with unexpected calls, texts or emails that mention your health care. We will never ask for your password or for payment. You do not need to do anything else.

        If you have questions, or if something in this notice worries you, call our support line on 0800 000 011. This number is for affected patients only.

        We are very sorry this happened.
  - id: referrals
    title: Referral records from referral-originating practices
    data_categories: [referral_letter, nhi_number, contact_details]
    support_contact: "0800 000 022 (referral records support line, 8am-8pm, 7 days)"
    notice:
      subject: Your referral records were affected by the Health Documents breach
      body: |
        Kia ora,

        We are writing to tell you that some of your health information was taken in the Health Documents breach in December 2025.

        What was taken: referral records sent by your general practice to a hospital or specialist through the portal. A referral record can include your name, date of birth, NHI number, contact details, and the reason you were referred.

        What was not taken: your full medical record, test results held by your practice, and any bank or payment details.

        What you can do: be careful with unexpected calls, texts or emails that mention your health care. We will never ask for your password or for payment. You do not need to do anything else.

        If you have questions, call our support line on 0800 000 022. This number is for affected patients only.

        We are very sorry this happened.
  - id: uploads
    title: Documents patients uploaded themselves
    data_categories: [patient_uploaded_document, contact_details]
    support_contact: "0800 000 033 (uploaded documents support line, 8am-8pm, 7 days)"
    notice:
      subject: Documents you uploaded were affected by the Health Documents breach
      body: |
        Kia ora,

        We are writing to tell you that documents you uploaded to the health portal yourself were taken in the Health Documents breach in December 2025.

        What was taken: the files you added to the Documents section of the portal, such as letters, scans or photos, and the contact details on your account.

        What you can do: think about what those documents contained. If they included identity documents, such as a passport or driver licence, consider contacting the issuer. Be careful with unexpected calls, texts or emails that mention your health care. We will never ask for your password or for payment.

        If you have questions, call our support line on 0800 000 033. This number is for affected patients only.

        We are very sorry this happened.

under_review_notice:
  subject: We are still checking whether the Health Documents breach affected you
  body: |
    Kia ora,

    We are still checking whether any of your health information was taken in the Health Documents breach in December 2025. We have not finished our investigation for your records yet.

    You do not need to do anything now. We will write to you again as soon as we know, and the health portal app will show the latest answer.

    Be careful with unexpected calls, texts or emails that mention your health care. We will never ask for your password or for payment.

not_affected_notice:
  subject: Your health information was not affected by the Health Documents breach
  body: |
    Kia ora,

    Based on our investigation, your health information was not taken in the Health Documents breach in December 2025: we have checked your records and they were not involved.

    Be careful with unexpected calls, texts or emails that mention the breach. We will never ask for your password or for payment.
correction_notice:
  subject: "Correction: your health information was not affected by the Health Documents breach"
  body: |
    Kia ora,

    We wrote to you before that your health information might have been affected by the Health Documents breach in December 2025. We have finished checking our records: your health information was not taken. This replaces our earlier message, and we are sorry for any worry it caused.

    Be careful with unexpected calls, texts or emails that mention the breach. We will never ask for your password or for payment.
`

// WriteSpec writes the demo incident spec (YAML) to w.
func WriteSpec(w io.Writer) error {
	_, err := io.WriteString(w, spec)
	return err
}
