/** What Steward keeps of an e-mail message: addresses, subject, text body; attachments by name and size only. */
export interface ParsedMail {
  messageId: string | undefined;
  from: string;
  to: string[];
  cc: string[];
  subject: string;
  body: string;
  date: string | null;
  attachments: { filename: string | null; contentType: string; size: number }[];
}

const MAX_BODY = 200_000;

/** Parse a raw RFC 5322 message (untrusted) with mailparser; HTML-only mail keeps its text. */
export async function parseMail(source: Buffer): Promise<ParsedMail> {
  // Loaded on the first message: only installations that read mail need mailparser.
  const { simpleParser } = await import('mailparser');
  const mail = await simpleParser(source, { skipImageLinks: true, skipTextToHtml: true });
  const addresses = (v: unknown) =>
    ([] as { value: { address?: string }[] }[])
      .concat((v as never) ?? [])
      .flatMap((a) => a.value.map((x) => x.address).filter((x): x is string => !!x));
  // PostgreSQL text cannot hold NUL characters.
  const text = (
    mail.text ?? (typeof mail.html === 'string' ? mail.html.replace(/<[^>]*>/g, ' ') : '')
  ).replace(/\0/g, '');
  return {
    messageId: mail.messageId?.replace(/\0/g, '').slice(0, 500) || undefined,
    from: addresses(mail.from)[0] ?? '',
    to: addresses(mail.to),
    cc: addresses(mail.cc),
    subject: (mail.subject ?? '').replace(/\0/g, '').slice(0, 1000),
    body: text.length > MAX_BODY ? text.slice(0, MAX_BODY) + '\n[truncated]' : text,
    date: mail.date && !Number.isNaN(mail.date.getTime()) ? mail.date.toISOString() : null,
    attachments: mail.attachments.map((a) => ({
      filename: a.filename ?? null,
      contentType: a.contentType,
      size: a.size,
    })),
  };
}
