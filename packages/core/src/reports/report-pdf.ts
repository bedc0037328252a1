import type { Report } from './report-data.ts';

/**
 * A report as PDF (pdfkit, standard Helvetica: text outside Windows-1252 is replaced). A landscape
 * A4 table that repeats its header on every page, with the tenant, the period and the generation time.
 */

const MARGIN = 36;

/** Helvetica (WinAnsi) cannot show every character: keep what it can, replace the rest. */
function printable(value: unknown): string {
  const s = value === null || value === undefined ? '' : String(value);
  return s.replace(/[^\x20-\x7e\u00a0-\u00ff]/g, '?');
}

export async function renderPdf(report: Report): Promise<Buffer> {
  // pdfkit (and its fonts) loads on the first report: ~6 MB of heap a server that never renders a PDF does not need.
  const { default: PDFDocument } = await import('pdfkit');
  const doc = new PDFDocument({
    size: 'A4',
    layout: 'landscape',
    margin: MARGIN,
    info: { Title: `${report.title} - ${report.tenant.slug}`, Author: 'Steward', Creator: 'Steward' },
  });
  const chunks: Buffer[] = [];
  doc.on('data', (c: Buffer) => chunks.push(c));
  const done = new Promise<Buffer>((resolve, reject) => {
    doc.on('end', () => resolve(Buffer.concat(chunks)));
    doc.on('error', reject);
  });

  const width = doc.page.width - 2 * MARGIN;
  const totalWeight = report.columns.reduce((s, c) => s + c.width, 0) || 1;
  const widths = report.columns.map((c) => (c.width / totalWeight) * width);
  const fontSize = 7;

  doc.font('Helvetica-Bold').fontSize(16).text(printable(report.title));
  doc.font('Helvetica').fontSize(9);
  doc.text(printable(`Tenant: ${report.tenant.name} (${report.tenant.slug}, ${report.tenant.id})`));
  doc.text(`Generated: ${report.generatedAt}`);
  if (report.period.since || report.period.until) {
    doc.text(`Period: ${report.period.since ?? 'beginning'} to ${report.period.until ?? 'now'}`);
  }
  doc.text(`Rows: ${report.rows.length}${report.truncated ? ' (truncated)' : ''}`);
  for (const n of report.notes) doc.text(printable(n));
  doc.moveDown();

  const rowHeight = (cells: string[]) =>
    Math.max(...cells.map((c, i) => doc.heightOfString(c || ' ', { width: widths[i]! - 4 }))) + 4;
  const drawRow = (cells: string[], bold: boolean) => {
    doc.font(bold ? 'Helvetica-Bold' : 'Helvetica').fontSize(fontSize);
    const h = rowHeight(cells);
    if (doc.y + h > doc.page.height - MARGIN) {
      doc.addPage();
      if (!bold) drawRow(header, true);
      doc.font('Helvetica').fontSize(fontSize);
    }
    const y = doc.y;
    let x = MARGIN;
    cells.forEach((c, i) => {
      doc.text(c, x + 2, y + 2, { width: widths[i]! - 4, lineBreak: true });
      x += widths[i]!;
    });
    doc
      .moveTo(MARGIN, y + h)
      .lineTo(MARGIN + width, y + h)
      .lineWidth(0.3)
      .strokeColor('#999999')
      .stroke();
    doc.x = MARGIN;
    doc.y = y + h;
  };
  const header = report.columns.map((c) => printable(c.header));
  drawRow(header, true);
  for (const r of report.rows) {
    // Long cells (details) are cut so one row never outgrows a page.
    drawRow(
      report.columns.map((c) => printable(r[c.key]).slice(0, 600)),
      false,
    );
  }
  if (!report.rows.length)
    doc
      .font('Helvetica')
      .fontSize(9)
      .text('No entries.', MARGIN, doc.y + 6);
  doc.end();
  return done;
}
