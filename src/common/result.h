#pragma once
// Result and Status are public (cohort/result.h) because the KV codec's API returns them; Cohort's own code
// includes them by this name, with the assertions (COHORT_ASSERT) that go with them, as before they were public.

#include "cohort/result.h"
#include "common/assert.h"
