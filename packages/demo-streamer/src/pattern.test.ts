// The bitmap font and the test pattern: frame size, determinism, and text that follows the clock and label.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GLYPH_HEIGHT, GLYPH_WIDTH, glyph, glyphPixel } from './font.ts';
import { FRAME_HEIGHT, FRAME_WIDTH, Frame, formatClock, TestPattern } from './pattern.ts';

/** The Y (luma) bytes of rows [top, bottom) of a frame. */
function lumaRows(frame: Frame, top: number, bottom: number): Buffer {
  return frame.data.subarray(top * frame.width, bottom * frame.width);
}

describe('font', () => {
  test('every glyph is 5 pixels wide and 7 rows tall', () => {
    for (const char of ' 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:.,-_/#()?') {
      const rows = glyph(char);
      assert.equal(rows.length, GLYPH_HEIGHT, char);
      for (const row of rows) assert.ok(row >= 0 && row < 1 << GLYPH_WIDTH, `${char}: row ${row}`);
    }
  });

  test('letters have both cases (ids are case-sensitive); an unknown character shows as ?', () => {
    assert.notDeepEqual(glyph('a'), glyph('A'));
    assert.deepEqual(glyph('€'), glyph('?'));
    assert.notDeepEqual(glyph('A'), glyph('?'));
  });

  test('bit 4 of a row is its leftmost pixel', () => {
    // the bar of T: the whole top row; its stem: the middle column only
    for (let x = 0; x < GLYPH_WIDTH; x++) assert.equal(glyphPixel('T', x, 0), true);
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((x) => glyphPixel('T', x, 3)),
      [false, false, true, false, false],
    );
  });
});

describe('test pattern', () => {
  const pattern = new TestPattern();
  const at = (ms: number) => new Date(2026, 10, 22, 9, 30, 15, ms);

  test('a frame is 640x360 yuv420p', () => {
    const frame = pattern.render({ label: 'ses_1', now: at(0) });
    assert.equal(frame.width, FRAME_WIDTH);
    assert.equal(frame.height, FRAME_HEIGHT);
    assert.equal(frame.data.length, (640 * 360 * 3) / 2);
  });

  test('the same scene draws the same frame, in a buffer of its own', () => {
    const a = pattern.render({ label: 'ses_1', now: at(250) });
    const b = pattern.render({ label: 'ses_1', now: at(250) });
    assert.ok(a.data.equals(b.data));
    assert.notEqual(a.data.buffer, b.data.buffer);
  });

  test('the clock text changes with the time, and the label text with the label', () => {
    const clockRows = (f: Frame) => lumaRows(f, 296, 360);
    const labelRows = (f: Frame) => lumaRows(f, 268, 288);
    const early = pattern.render({ label: 'ses_1', now: at(0) });
    const later = pattern.render({ label: 'ses_1', now: at(1) });
    const other = pattern.render({ label: 'ses_2', now: at(0) });
    assert.ok(!clockRows(early).equals(clockRows(later)), '15.000 and 15.001 look different');
    assert.ok(labelRows(early).equals(labelRows(later)));
    assert.ok(!labelRows(early).equals(labelRows(other)), 'ses_1 and ses_2 look different');
    assert.ok(clockRows(early).equals(clockRows(other)));
  });

  test('the box moves with the clock while the rest of the bars stay put', () => {
    const boxRows = (f: Frame) => lumaRows(f, 96, 144);
    const a = pattern.render({ label: 'x', now: at(0) });
    const b = pattern.render({ label: 'x', now: at(500) });
    assert.ok(!boxRows(a).equals(boxRows(b)));
    assert.ok(lumaRows(a, 0, 96).equals(lumaRows(b, 0, 96)));
  });

  test('text is drawn in the font, white on black', () => {
    const frame = new Frame(16, 8);
    frame.fillRect(0, 0, 16, 8, { y: 16, u: 128, v: 128 });
    frame.drawText('T', 0, 0, 1, { y: 235, u: 128, v: 128 });
    const row0 = [...lumaRows(frame, 0, 1).subarray(0, 6)];
    const row3 = [...lumaRows(frame, 3, 4).subarray(0, 6)];
    assert.deepEqual(row0, [235, 235, 235, 235, 235, 16]);
    assert.deepEqual(row3, [16, 16, 235, 16, 16, 16]);
  });

  test('the clock reads HH:MM:SS.mmm', () => {
    assert.equal(formatClock(new Date(2026, 0, 2, 3, 4, 5, 67)), '03:04:05.067');
    assert.equal(formatClock(new Date(2026, 0, 2, 23, 59, 59, 999)), '23:59:59.999');
  });
});
