import { describe, expect, it } from 'vitest';
import { SearchFiltersSchema } from '../../../functions/query/src/schemas.ts';

describe('SearchFiltersSchema dates', () => {
  it('accepts a dateFrom with a time on the day a date-only dateTo names (dateTo is inclusive at its precision)', () => {
    const r = SearchFiltersSchema.safeParse({ dateFrom: '2020-01-01T10:00Z', dateTo: '2020-01-01' });
    expect(r.success).toBe(true);
  });

  it.each([
    ['a later day', { dateFrom: '2020-01-02', dateTo: '2020-01-01' }],
    ['a later time on the same day', { dateFrom: '2020-01-01T10:00Z', dateTo: '2020-01-01T09:00Z' }],
    ['a later day than a date-time dateTo', { dateFrom: '2020-01-02', dateTo: '2020-01-01T23:00Z' }],
  ])('rejects a dateFrom on %s', (_, filters) => {
    const r = SearchFiltersSchema.safeParse(filters);
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.message)).toContain('dateFrom is after dateTo');
  });

  it('accepts real dates in the years 0 to 99 and still refuses impossible ones there', () => {
    expect(SearchFiltersSchema.safeParse({ dateFrom: '0050-03-01' }).success).toBe(true);
    expect(SearchFiltersSchema.safeParse({ dateFrom: '0050-02-30' }).success).toBe(false);
  });
});
